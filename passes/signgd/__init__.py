"""signGD neurons (spec in ../shared/spec): decomposition into spec ops, spikify and offset calibration."""
