"""A step in its rule's own image: the step's snakemake (the site's) hands each rule command over to the
image the rule names. `build` makes the text that does it on either backend; `shim` is what runs in the
step's driver container as `apptainer`."""
