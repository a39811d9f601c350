"""Measuring trained runs: sharpness measures, the evaluation of a run, corrupted test sets, loss landscapes."""
