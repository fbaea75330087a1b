"""CPU stages."""
