"""Answer parsing behind the default reward (`rap_hf.rewards.accuracy_reward`); the cascade is in docs/rewards.md.

* `text`: normalisation for string comparison (case, punctuation, articles, LaTeX text commands, number words);
* `choices`: multiple-choice letters in their usual spellings, and the options of a row;
* `extract`: the extraction cascade, linear in the length of the completion;
* `guard`: which expressions are safe to hand to sympy (no power towers, huge factorials or literals);
* `matching`: an extracted answer against the ground truth (letters, option text, strings, math-verify).

Nothing here imports torch or `datasets`.
"""
