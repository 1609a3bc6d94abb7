cwlVersion: v1.2
class: CommandLineTool
baseCommand: [touch, results/cwl/out.txt]
inputs: []
outputs: []
