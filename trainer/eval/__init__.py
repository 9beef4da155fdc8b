"""`trainer eval RUN`: the tuned model against its base on the run's held-out data: loss and perplexity, answers side
by side, and the user's own checks on them."""
