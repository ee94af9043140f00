"""Environment tasks: one definition per task, used for both online training and evaluation."""
