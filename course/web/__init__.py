"""The search service's plumbing, supplied by the course: Objective 6's learner writes the search (its route, SQL,
caches and metrics) and `create_service_app()` assembles it with everything here."""
