"""The top layer: the `tocsr` command (cli), the stage functions that read typed inputs, call one
layer and write typed outputs (stages), and the main job that chains them with resumable markers
(mainjob). Nothing below imports this package."""
