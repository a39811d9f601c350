"""Training the study's networks: data sets, models, the six controls, SAM, and one run into runs/."""
