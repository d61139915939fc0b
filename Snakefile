# The RL research pipeline. Run: snakemake --cores 2   (configs/default.yaml)
# or: snakemake --cores 2 --configfile configs/ci.yaml
from snakemake.utils import min_version

min_version("9.0")


configfile: "configs/default.yaml"


include: "workflow/rules/common.smk"


container: config["container"]


report: "workflow/report/workflow.rst"


include: "workflow/rules/mlflow.smk"
include: "workflow/rules/ppo.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/pendulum.smk"


rule all:
    input:
        all_targets(),
    default_target: True
