rule align:
    input:
        reads="reads/{sample}.fq",
        index="resources/index",
    output:
        bam=temp("results/align/{sample}/aligned.bam"),
        counts="results/align/{sample}/counts.tab",
    log: "logs/align/{sample}.log"
    benchmark: "benchmarks/align/{sample}.tsv"
    wrapper: "bio/align"


rule count_matrix:
    input: expand("results/align/{sample}/counts.tab", sample=config["samples"])
    output: "results/counts/all.tsv"
    log: "logs/count_matrix.log"
    script: "../scripts/count_matrix.sh"
