"""The dispatch benchmark's trial: returns at once."""


def noop(params, ctx):
    return {"x": params["i"]}
