# The report lands in the workdir itself, where users look for it.
rule report:
    input:
        counts="results/counts/all.tsv",
        bams=expand("results/align/{sample}/aligned.bam", sample=config["samples"]),
    output: "report.html"
    log: "logs/report.log"
    script: "../scripts/report.sh"
