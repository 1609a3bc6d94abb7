# hepgen 1.2 (a stand-in for a software release on /cvmfs): source this file.
export HEPGEN_VERSION=1.2
export HEPGEN_HOME=/cvmfs/sft.example.org/hepgen/1.2
export PATH=$HEPGEN_HOME/bin:$PATH
