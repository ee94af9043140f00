"""Dataset generators: local PointMaze and AntMaze datasets, and the ant controller AntMaze data is collected with."""
