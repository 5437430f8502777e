"""Demo and test material, not needed to score or train your own data: the built-in datasets
(``data``, ``visual_arith``), tiny models built offline (``tiny_models``) and the shipped reference model
``rap-tiny-vl`` (``reference_model``, weights in ``assets/``)."""
