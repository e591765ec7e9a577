"""Word lists for synthetic but plausible French names, street names and establishment names.

Surnames are the most frequent in France (INSEE birth records, 1891-1990 ranking, top 150 kept), first
names are frequent ones of people born 1950-2000; the weights are a Zipf-like rank decay, which is how
these distributions look. Street names are the commonest French odonyms. None of this is copied
from a person register: combinations are random.
"""

from __future__ import annotations

SURNAMES = (
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU", "LAURENT", "SIMON",
    "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID", "BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT",
    "LAMBERT", "FONTAINE", "ROUSSEAU", "VINCENT", "MULLER", "LEFEVRE", "FAURE", "ANDRE", "MERCIER", "BLANC", "GUERIN",
    "BOYER", "GARNIER", "CHEVALIER", "FRANCOIS", "LEGRAND", "GAUTHIER", "GARCIA", "PERRIN", "ROBIN", "CLEMENT",
    "MORIN", "NICOLAS", "HENRY", "ROUSSEL", "MATHIEU", "GAUTIER", "MASSON", "MARCHAND", "DUVAL", "DENIS", "DUMONT",
    "MARIE", "LEMAIRE", "NOEL", "MEYER", "DUFOUR", "MEUNIER", "BRUN", "BLANCHARD", "GIRAUD", "JOLY", "RIVIERE",
    "LUCAS", "BRUNET", "GAILLARD", "BARBIER", "ARNAUD", "MARTINEZ", "GERARD", "ROCHE", "RENARD", "SCHMITT", "ROY",
    "LEROUX", "COLIN", "VIDAL", "CARON", "PICARD", "ROGER", "FABRE", "AUBERT", "LEMOINE", "RENAUD", "DUMAS", "LACROIX",
    "OLIVIER", "PHILIPPE", "BOURGEOIS", "PIERRE", "BENOIT", "REY", "LECLERC", "PAYET", "ROLLAND", "LECLERCQ",
    "GUILLAUME", "LECOMTE", "LOPEZ", "JEAN", "DUPUY", "GUILLOT", "HUBERT", "BERGER", "CARPENTIER", "SANCHEZ", "DUPUIS",
    "MOULIN", "LOUIS", "DESCHAMPS", "HUET", "VASSEUR", "PEREZ", "BOUCHER", "FLEURY", "ROYER", "KLEIN", "JACQUET",
    "ADAM", "PARIS", "POIRIER", "MARTY", "AUBRY", "GUYOT", "CARRE", "CHARLES", "RENAULT", "CHARPENTIER", "MENARD",
    "MAILLARD", "BARON", "BERTIN", "BAILLY", "HERVE", "SCHNEIDER", "FERNANDEZ", "LE GALL", "COLLET", "LEGER",
    "BOUVIER", "JULIEN", "PREVOST", "MILLET", "PERROT", "DANIEL", "LE ROUX", "COUSIN", "GERMAIN", "BRETON", "BESSON",
    "LANGLOIS", "REMY", "LE GOFF", "PELLETIER", "LEVEQUE", "PERRIER", "LEBLANC", "BARRE", "LEBRUN", "MARCHAL", "WEBER",
    "MALLET", "HAMON", "BOULANGER", "JACOB", "MONNIER", "MICHAUD", "RODRIGUEZ", "GUICHARD", "GILLET", "ETIENNE",
    "GRONDIN", "POULAIN", "TESSIER", "CHEVALLIER", "COLLIN", "CHAUVIN", "DA SILVA", "BOUCHET", "GAY", "LEMAITRE",
    "BENARD", "MARECHAL", "HUMBERT", "REYNAUD", "ANTOINE", "HOARAU", "PERRET", "BARTHELEMY", "CORDIER", "PICHON",
    "LEJEUNE", "GILBERT", "LAMY", "DELAUNAY", "PASQUIER", "CARLIER", "LAPORTE", "BENALI", "HADDAD", "BENSAID",
    "NGUYEN", "TRAN", "DIALLO", "TRAORE", "KONE", "MOHAMED",
)
MALE = (
    "Jean", "Philippe", "Michel", "Alain", "Patrick", "Nicolas", "Christophe", "Pierre", "Christian", "Éric",
    "Frédéric", "Laurent", "Stéphane", "David", "Pascal", "Daniel", "Sébastien", "Julien", "Thierry", "Olivier",
    "Bernard", "Thomas", "Alexandre", "Gérard", "Didier", "Dominique", "Vincent", "François", "Bruno", "Guillaume",
    "Jérôme", "Jacques", "Marc", "Maxime", "Romain", "Claude", "Antoine", "Franck", "Jean-Pierre", "Anthony", "Kévin",
    "Gilles", "Cédric", "Serge", "André", "Mathieu", "Benjamin", "Patrice", "Fabrice", "Joël", "Jérémy", "Clément",
    "Arnaud", "Denis", "Paul", "Lucas", "Hervé", "Jean-Claude", "Sylvain", "Yves", "Ludovic", "Guy", "Florian",
    "Damien", "Alexis", "Mickaël", "Quentin", "Emmanuel", "Louis", "Benoît", "Jean-Luc", "Fabien", "Francis", "Hugo",
    "Jonathan", "Loïc", "Xavier", "Théo", "Adrien", "Raphaël", "Jean-François", "Grégory", "Robert", "Michaël",
    "Karim", "Yann", "Mohamed", "Samuel", "Rémi", "Bastien", "Hakim", "Hamid",
)
FEMALE = (
    "Marie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Martine", "Christine", "Françoise", "Valérie", "Sandrine",
    "Stéphanie", "Véronique", "Sophie", "Céline", "Chantal", "Patricia", "Anne", "Brigitte", "Julie", "Monique",
    "Aurélie", "Nicole", "Laurence", "Annie", "Émilie", "Dominique", "Virginie", "Corinne", "Élodie", "Christelle",
    "Camille", "Caroline", "Léa", "Sarah", "Florence", "Laetitia", "Audrey", "Hélène", "Laura", "Manon", "Michèle",
    "Cécile", "Christiane", "Béatrice", "Claire", "Nadine", "Delphine", "Pauline", "Karine", "Mélanie", "Marion",
    "Chloé", "Jacqueline", "Élisabeth", "Evelyne", "Marine", "Claudine", "Anaïs", "Lucie", "Danielle", "Carole",
    "Fabienne", "Mathilde", "Sandra", "Pascale", "Annick", "Charlotte", "Emma", "Severine", "Sabrina", "Amandine",
    "Myriam", "Jocelyne", "Alexandra", "Angélique", "Josiane", "Joëlle", "Agnès", "Mireille", "Vanessa", "Justine",
    "Sonia", "Bernadette", "Emmanuelle", "Océane", "Clémence", "Estelle", "Fatima", "Inès", "Yasmine", "Aïcha",
)

# (abbreviation printed in FINESS ``typvoie`` / RPPS ``Code type de voie``, label) - NOS TRE_R35 codes.
STREET_TYPES = (("R", "Rue", 48), ("AV", "Avenue", 16), ("BD", "Boulevard", 7), ("PL", "Place", 6),
                ("CHE", "Chemin", 7), ("RTE", "Route", 8), ("ALL", "Allée", 4), ("IMP", "Impasse", 2),
                ("QUAI", "Quai", 1), ("ZI", "Zone industrielle", 1))
STREET_NAMES = (
    "de la Gare", "Victor Hugo", "Jean Jaurès", "de la République", "Pasteur", "du Général de Gaulle",
    "de l'Église", "du Moulin", "Jules Ferry", "de la Mairie", "des Écoles", "Gambetta", "Carnot", "du Château",
    "de Verdun", "de la Libération", "Foch", "Émile Zola", "Voltaire", "Anatole France", "Jean Moulin",
    "de la Paix", "des Lilas", "des Acacias", "du Stade", "de Paris", "du Maréchal Leclerc", "de la Liberté",
    "Clemenceau", "Aristide Briand", "Paul Bert", "des Tilleuls", "de l'Hôpital", "de la Fontaine",
    "Louis Pasteur", "des Rosiers", "du 8 Mai 1945", "du 11 Novembre", "Saint-Martin", "Nationale",
    "Marcel Pagnol", "des Peupliers", "du Lavoir", "de Bretagne", "Alsace-Lorraine", "des Vignes",
    "du Port", "Sadi Carnot", "Albert Camus", "Henri Dunant", "Lamartine", "Pierre Curie", "Marie Curie",
    "Georges Clemenceau", "des Chênes", "du Parc", "de la Croix", "Saint-Jacques", "du Puits", "des Jardins",
)

# Patron saints and gentle words used in the names of care homes and clinics.
HOME_NAMES = ("Les Tilleuls", "Les Glycines", "Les Jardins du Parc", "La Roseraie", "Les Hortensias",
              "Le Clos Fleuri", "Les Magnolias", "Les Lilas", "La Source", "Le Bois Joli", "Les Charmilles",
              "Saint-Joseph", "Sainte-Anne", "Notre-Dame", "Les Cèdres", "La Chênaie", "Les Oliviers",
              "Le Val Fleuri", "Les Écureuils", "L'Oustal", "Les Mimosas", "La Résidence du Lac",
              "Les Terrasses", "Le Belvédère", "Les Primevères", "Bon Accueil", "La Sérénité", "Les Camélias")
CLINIC_NAMES = ("du Parc", "Saint-Jean", "Sainte-Marie", "des Cèdres", "de l'Union", "Pasteur", "du Val",
                "Saint-Augustin", "Jeanne d'Arc", "des Alpes", "de la Sauvegarde", "Saint-Hilaire", "du Pont",
                "Belledonne", "des Franciscaines", "Saint-Roch", "Les Fontaines", "de l'Anjou", "Claude Bernard",
                "Ambroise Paré", "Saint-Vincent", "du Mont-Louis", "Sainte-Odile", "des Sources", "de l'Océan")
ASSOCIATION_NAMES = ("ADAPEI", "APAJH", "Les Papillons Blancs", "La Sauvegarde", "Handi Avenir", "ADMR",
                     "Les Amis de l'Atelier", "Fondation des Solidarités", "Association Vivre Ensemble",
                     "Association Entraide et Soins", "Association Présence", "Mutualité Française",
                     "Association Accueil et Partage", "Fondation du Bon Secours", "Association Horizon",
                     "Association Le Relais", "Association Arc-en-Ciel", "Association Saint-Vincent")
