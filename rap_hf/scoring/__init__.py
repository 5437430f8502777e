"""Scoring: everything that runs the model to compute the `rap_*` score columns.

Modules: ``engine`` (`ScoringEngine`: rollouts, rewards and the ACE attention pass for a batch of rows; the
one public scorer every mode calls), ``filter`` (`RAPDataFilter`: the engine over ``datasets.map``),
``rollouts`` (prompts with and without the image, seeded batched generation), ``attention`` (final-layer
attention capture), ``images`` (per-row decoding), ``alarms`` (degenerate-score warnings), ``loading`` (model
and processor), ``distributed`` (resumable scoring across processes), ``checkpointing`` (batch files and
fingerprints), ``zero3`` (DeepSpeed ZeRO-3 scoring), ``decisive`` (``text_arm="decisive"``: when a row's
text-only arm can stop).
"""
