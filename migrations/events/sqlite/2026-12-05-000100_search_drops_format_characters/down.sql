-- Nothing to undo: the events indexed again are indexed by the rule of the build that runs.
SELECT 1;
