"""Exchange: signed packages out and in, keys, push to the national portal, the agencies' validator.
May import pipeline/ (to run a received package as a batch) and every room below it; never simulators/."""
