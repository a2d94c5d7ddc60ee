"""PCI: configuration space, BARs and INTx for the devices on bus 0."""
