"""A third HTTP source declared in the tests only: a ministry's REST list of business registrations."""
