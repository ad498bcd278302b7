"""Rate-coded IF neurons (ReLU nets): spikify, input encoding and spike-based threshold balancing."""
