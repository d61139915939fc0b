# The RL research pipeline. Run: snakemake --cores 2   (configs/default.yaml)
# or: snakemake --cores 2 --configfile configs/ci.yaml
from snakemake.utils import min_version

min_version("9.0")

# No `configfile:` directive: Snakemake would merge configs/default.yaml UNDER a
# --configfile, leaking the default study's values into every other study. common.smk
# loads the default only when no study config was given.


include: "workflow/rules/common.smk"


container: config["container"]


report: "workflow/report/workflow.rst"


include: "workflow/rules/mlflow.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/ppo.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/pendulum.smk"
include: "workflow/rules/compare.smk"


rule all:
    default_target: True
    input:
        all_targets(),
