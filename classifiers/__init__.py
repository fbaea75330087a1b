"""Model-backed scoring: quality classifiers, the encoder classifier, the hybrid LM scorer."""
