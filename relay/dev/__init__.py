"""Development doubles, shipped like starlette's testclient: a Recall bot simulator and its frame
builders, VideoDB and ASAPP emulators, embedded uvicorn servers, a private redis-server. The relay
runtime never imports this package."""
