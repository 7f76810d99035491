# esl-guard developer targets.  `make` or `make help` lists them.
#
# make integration: the integration tests against a real FreeSWITCH 1.10.12 in Docker, built from
# source by tests/integration/Dockerfile (the first run builds the image, 5-10 minutes), with sipp
# placing real SIP calls (tests/integration/README.md).  Needs a Linux Docker engine with the
# compose plugin, sipp on PATH (Debian/Ubuntu: apt-get install sip-tester) and the ports 5060,
# 5080 and 5090 UDP, 8021 TCP and 16384-16483 UDP free on 127.0.0.1.  The Python environment
# must have esl-guard's dependencies and pytest: make integration PYTHON=/path/to/venv/bin/python
# Without Docker, with a FreeSWITCH binary: ESL_GUARD_FS_BIN=/path/to/freeswitch pytest -m
# integration tests/integration (the suite starts it; see the README there).

PYTHON ?= python3
DOCKER_COMPOSE ?= docker compose
PYTEST_ARGS ?=

IT_DIR := tests/integration
IT_COMPOSE := $(IT_DIR)/docker-compose.yml
IT_ENV := ESL_GUARD_FS=127.0.0.1:8021:ClueCon ESL_GUARD_SIP=127.0.0.1:5080 \
	ESL_GUARD_SIP_AUTH=127.0.0.1:5060 ESL_GUARD_COMPOSE=$(IT_COMPOSE)

.DEFAULT_GOAL := help
.PHONY: help integration integration-up integration-down integration-check

help: ## list the targets
	@echo "esl-guard make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables: PYTHON=$(PYTHON)  DOCKER_COMPOSE=$(DOCKER_COMPOSE)  PYTEST_ARGS=$(PYTEST_ARGS)"

integration: integration-check ## build and start FreeSWITCH in Docker, run pytest -m integration with sipp, tear down (also on failure)
	@chmod -R a+rX $(IT_DIR)/freeswitch
	@trap '$(DOCKER_COMPOSE) -f $(IT_COMPOSE) down -v --remove-orphans' EXIT; \
	trap 'exit 130' INT TERM; \
	$(DOCKER_COMPOSE) -f $(IT_COMPOSE) up -d --build && \
	$(IT_ENV) $(PYTHON) -m pytest $(IT_DIR) -m integration -ra $(PYTEST_ARGS); \
	status=$$?; \
	if [ $$status -ne 0 ]; then \
		echo "--- FreeSWITCH container output (last 100 lines) ---"; \
		$(DOCKER_COMPOSE) -f $(IT_COMPOSE) logs --no-color --tail 100 freeswitch; \
		echo "--- /var/log/freeswitch/freeswitch.log (last 200 lines) ---"; \
		$(DOCKER_COMPOSE) -f $(IT_COMPOSE) exec -T freeswitch \
			tail -n 200 /var/log/freeswitch/freeswitch.log || true; \
	fi; \
	exit $$status

integration-up: integration-check ## build and start the test FreeSWITCH and leave it running (prints the variables for pytest)
	@chmod -R a+rX $(IT_DIR)/freeswitch
	$(DOCKER_COMPOSE) -f $(IT_COMPOSE) up -d --build
	@echo "then: $(IT_ENV) $(PYTHON) -m pytest $(IT_DIR) -m integration" | tr -s '\t' ' '

integration-down: ## stop and remove the test FreeSWITCH
	$(DOCKER_COMPOSE) -f $(IT_COMPOSE) down -v --remove-orphans

integration-check:
	@command -v sipp >/dev/null 2>&1 || { echo "make: sipp not found on PATH (Debian/Ubuntu: apt-get install sip-tester)" >&2; exit 2; }
	@$(DOCKER_COMPOSE) version >/dev/null 2>&1 || { echo "make: '$(DOCKER_COMPOSE)' does not work: install Docker with the compose plugin (or run pytest with ESL_GUARD_FS_BIN=/path/to/freeswitch, or ESL_GUARD_FS/ESL_GUARD_SIP against a running FreeSWITCH: see $(IT_DIR)/README.md)" >&2; exit 2; }
	@$(PYTHON) -c "import pytest, esl_guard" 2>/dev/null || { echo "make: $(PYTHON) cannot import pytest and esl_guard: set PYTHON=/path/to/venv/bin/python" >&2; exit 2; }
