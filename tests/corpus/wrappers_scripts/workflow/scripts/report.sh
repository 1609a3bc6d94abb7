exec 2> "${snakemake_log[0]}"
{ echo "<html><body><pre>"; cat "${snakemake_input[counts]}"; echo "</pre></body></html>"; } > "${snakemake_output[0]}"
