"""The triggers and actions a workflow can use, generated from the catalog plus a few special ones.

* `base`: ActionContext, Action, ActionInputError (what every action is made of)
* `refs`: an Id, an email or a name wherever QBO wants a reference; ReferenceError
* `actions`: the standard actions, one catalog row per entity; `special`: the few that need more
* `registry`: ACTIONS by key, and `action(key)`
* `triggers`, `polling`: what starts a workflow
"""
