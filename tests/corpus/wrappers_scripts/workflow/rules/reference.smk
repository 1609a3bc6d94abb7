rule get_genome:
    output: "resources/genome.fa"
    params: url=config["reference"]["genome_url"]
    log: "logs/get_genome.log"
    wrapper: "bio/fetch"


rule get_annotation:
    output: "resources/genes.gtf"
    params: url=config["reference"]["annotation_url"]
    log: "logs/get_annotation.log"
    wrapper: "bio/fetch"


rule genome_index:
    input:
        fasta="resources/genome.fa",
        gtf="resources/genes.gtf",
    output: directory("resources/index")
    log: "logs/genome_index.log"
    benchmark: "benchmarks/genome_index.tsv"
    container: "docker://quay.io/biocontainers/star:2.7.11b--h43eeafb_0"
    threads: 2
    wrapper: "bio/index"
