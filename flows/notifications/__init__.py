"""Order-journey notifications (issue 16): journey events, templates, the decision, the job."""
