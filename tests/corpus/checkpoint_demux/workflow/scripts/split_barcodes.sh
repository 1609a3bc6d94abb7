# One file per barcode (first column) with the rest of each line.
exec 2> "${snakemake_log[0]}"
out=${snakemake_output[0]}
mkdir -p "$out"
while read -r barcode rest; do
    echo "$rest" >> "$out/$barcode.txt"
done < "${snakemake_input[0]}"
