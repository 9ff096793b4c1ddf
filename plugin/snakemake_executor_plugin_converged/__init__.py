"""Snakemake executor plugin: `snakemake --executor converged`."""
