"""The scale benchmark's parts (bench/scale.py runs them): cluster set-up, the drivers that submit a workload
(our operator, a bare client, training-operator), the measurement of one workload, and the report."""
