"""The bottom layer: search space and architecture specs, models, teacher, surrogates, distillation,
SR models, artifacts, errors and provenance. Imports nothing from `bench`, `search`, `reports` or
`tocsr.app`."""
