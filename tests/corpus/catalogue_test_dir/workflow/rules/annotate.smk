rule annotate:
    input:
        reads="data/{sample}.txt",
        header="../workflow/resources/header.txt",
    output: "results/annotated/{sample}.txt"
    log: "logs/annotate/{sample}.log"
    shell: "{{ cat {input.header} {input.reads} > {output}; }} 2> {log}"


rule check_samples:  # the sample sheet against the schema's required columns, in the job
    input:
        schema="../workflow/schemas/samples.schema.yaml",
        sheet=config["samples"],
    output: "results/qc/samples-checked.txt"
    log: "logs/check_samples.log"
    shell: "{{ grep -A2 '^required:' {input.schema} | tail -n +2 | tr -d ' -' > {output}; head -1 {input.sheet} >> {output}; }} 2> {log}"


rule summarize:
    input: expand("results/annotated/{sample}.txt", sample=NAMES)
    output: "results/summary.txt"
    log: "logs/summarize.log"
    params: title=config["title"]
    script: "../scripts/summarize.sh"


rule config_defaults:  # not in all: the repository's default config, which is not part of the workflow's source
    input: "../config/config.yaml"
    output: "results/qc/config-defaults.txt"
    shell: "cp {input} {output}"
