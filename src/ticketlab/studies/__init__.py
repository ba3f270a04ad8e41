"""Studies on top of an experiment's tickets: linear mode connectivity (``stability``) and its
checksummed files."""
