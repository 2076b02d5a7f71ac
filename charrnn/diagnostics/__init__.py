"""Seeing inside a model: numbers and arrays about gradients over time, memory, surprisal
and single units. The command layer draws and colours them; nothing here prints."""
