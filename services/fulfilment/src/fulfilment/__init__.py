"""Fulfilment service: shipments per location, carrier choice, labels, pick/pack/dispatch."""
