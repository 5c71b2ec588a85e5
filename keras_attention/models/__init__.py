"""Functional-API model builders returning `keras.Model`."""
