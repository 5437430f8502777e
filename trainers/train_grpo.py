"""GRPO on RAP-selected data (TRL), for `accelerate launch`.

    accelerate launch trainers/train_grpo.py --config trainers/configs/cpu_smoke.yaml
    accelerate launch --config_file accelerate_config.yaml trainers/train_grpo.py --config my_recipe.yaml

Every flag of RAPScriptArguments, RAPGRPOConfig and TRL's ModelConfig works on the command line or in the
YAML (see rap_hf/training/script.py and docs/training.md). `rap-hf train` launches the same code from an
installed package (`accelerate launch -m rap_hf.training.script`).
"""

from rap_hf.training.script import main, make_parser

if __name__ == "__main__":
    parser = make_parser()
    script_args, training_args, model_args = parser.parse_args_and_config()
    main(script_args, training_args, model_args)
