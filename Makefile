# AI gateway nginx module. `make help` lists the targets.
#
# Everything a fresh Debian 12 machine lacks (build packages, the Perl test libraries,
# Debian's nginx for the stock-nginx build) is installed by `make deps`, which the other
# targets call. Crates come from the crate registry on the first build.

SHELL        := /bin/bash
CARGO        ?= cargo
MODULE       := ngx_http_ai_gateway_module
OBJS         := vendor/objs
DEB_DIR      := vendor/debian
RUN_PREFIX   := $(CURDIR)/vendor/run
TEST_PORT    ?= 1984
# The official OpenAI and Anthropic Python SDKs, for t/096-sdk.t, and h2 (their transport speaks
# HTTP/2 with it, for t/170-http2.t) (from the Python package index, pinned)
SDK_VENV     := vendor/sdk-venv
SDK_PACKAGES := openai==3.54.0 anthropic==2.12.0 h2==4.3.0
# schemathesis (and the hypothesis it generates with), for t/133-admin-fuzz.t (from the
# Python package index, pinned: the fuzzer's cases depend on both)
FUZZ_VENV     := vendor/fuzz-venv
FUZZ_PACKAGES := schemathesis==4.32.5 hypothesis==6.170.27
# The dashboard's browser tests (t/160-dashboard.t): Debian's chromium, driven by playwright-core
# (pinned in t/browser/package-lock.json, from the npm registry; it never downloads a browser)
BROWSER_PACKAGES := chromium fonts-dejavu-core
BROWSER_DIR      := t/browser

APT_PACKAGES := build-essential pkg-config clang libclang-dev libpcre2-dev libssl-dev openssl \
                zlib1g-dev curl ca-certificates perl libtest-base-perl libtext-diff-perl \
                libtest-longstring-perl \
                nginx nginx-dev prometheus python3 python3-venv redis-server redis-tools \
                mariadb-server
BENCH_PACKAGES := wrk python3 util-linux valgrind nginx libnginx-mod-http-lua
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The Redis that `make redis` starts when none answers on 127.0.0.1:6379 (for the t/ suite)
REDIS_DIR    := $(CURDIR)/vendor/redis
# The MariaDB that `make mariadb` starts when none answers on 127.0.0.1:$(MYSQL_PORT) (root,
# no password: what the t/ suite's MariaDB tests expect)
MARIADB_DIR  := $(CURDIR)/vendor/mariadb
MYSQL_PORT   ?= 3306
MARIADB_UP   := mariadb --no-defaults -h 127.0.0.1 -P $(MYSQL_PORT) -u root -e 'SELECT 1' >/dev/null 2>&1

.DEFAULT_GOAL := build
.PHONY: help deps sdk-deps fuzz-deps browser-deps bench-deps build debian run stop check unittest inttest inttest-debian \
        bench bench-smoke test clean redis mariadb publish-config

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

# Installs the packages of $(1) that are missing. RUNLEVEL=1 keeps the nginx package from
# starting its own service while it installs.
define apt_install
missing=""; for p in $(1); do \
    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
        || missing="$$missing $$p"; \
done; \
if [ -n "$$missing" ]; then \
    echo "installing:$$missing"; \
    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
    $(SUDO) env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq \
        --no-install-recommends $$missing </dev/null; \
fi
endef

deps: ## install missing Debian packages (build tools, nginx-dev, Perl test libraries)
	@$(call apt_install,$(APT_PACKAGES))
	@command -v $(CARGO) >/dev/null || { echo "cargo (Rust >= 1.81) is required: https://rustup.rs"; exit 1; }

build: deps ## build the module and nginx 1.28.3 (--with-compat) into vendor/objs
	$(CARGO) build --release --locked
	@mkdir -p $(OBJS)
	@# copy then rename, so a running nginx (text file busy) does not stop the build
	@cp target/release/lib$(MODULE).so $(OBJS)/.$(MODULE).so && mv -f $(OBJS)/.$(MODULE).so $(OBJS)/$(MODULE).so
	@cp "$$(ls -t target/release/build/nginx-sys-*/out/objs/nginx | head -1)" $(OBJS)/.nginx && mv -f $(OBJS)/.nginx $(OBJS)/nginx
	@echo "built $(OBJS)/$(MODULE).so for $$($(OBJS)/nginx -v 2>&1 | sed 's/.*: //')"

debian: deps ## build the module for Debian's stock nginx (/usr/sbin/nginx) into vendor/debian
	@# objs/Makefile is written last: a configure that was interrupted runs again
	@if [ ! -f $(DEB_DIR)/src/objs/ngx_auto_config.h ] || [ ! -f $(DEB_DIR)/src/objs/Makefile ]; then \
	    rm -rf $(DEB_DIR)/src && mkdir -p $(DEB_DIR) && cp -r /usr/share/nginx/src $(DEB_DIR)/src && \
	    cd $(DEB_DIR)/src && source ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" >configure.log 2>&1 \
	        || { tail -20 configure.log; exit 1; }; \
	fi
	NGINX_SOURCE_DIR=$(CURDIR)/$(DEB_DIR)/src CARGO_TARGET_DIR=$(CURDIR)/target-debian \
	    $(CARGO) build --release --locked --no-default-features --features module
	@cp target-debian/release/lib$(MODULE).so $(DEB_DIR)/.$(MODULE).so && mv -f $(DEB_DIR)/.$(MODULE).so $(DEB_DIR)/$(MODULE).so
	@echo "built $(DEB_DIR)/$(MODULE).so for $$(/usr/sbin/nginx -v 2>&1 | sed 's/.*: //')"

run: build redis mariadb ## run the gateway on 127.0.0.1:8080, the config center on 127.0.0.1:8001 and the dashboard on 127.0.0.1:3000 (mock provider, MySQL, Redis)
	@rm -rf $(RUN_PREFIX)/conf && mkdir -p $(RUN_PREFIX)/conf $(RUN_PREFIX)/logs $(RUN_PREFIX)/modules
	@cp nginx-conf/* $(RUN_PREFIX)/conf/
	@ln -sf $(CURDIR)/$(OBJS)/$(MODULE).so $(RUN_PREFIX)/modules/$(MODULE).so
	@# the dashboard's static files, served as they are (no build step)
	@ln -sfn $(CURDIR)/dashboard $(RUN_PREFIX)/dashboard
	@# kept across runs (the database holds credentials sealed with the key): made once
	@umask 077; [ -s $(RUN_PREFIX)/secret.key ] || openssl rand -hex 32 > $(RUN_PREFIX)/secret.key
	@umask 077; [ -s $(RUN_PREFIX)/admin-password ] || openssl rand -base64 18 > $(RUN_PREFIX)/admin-password
	@install -m 600 $(RUN_PREFIX)/secret.key $(RUN_PREFIX)/admin-password $(RUN_PREFIX)/conf/
	@# the last-known-good snapshot is written by the workers (user nobody when started as root)
	@mkdir -p $(RUN_PREFIX)/state && if [ "$$(id -u)" = 0 ]; then chown nobody $(RUN_PREFIX)/state; fi
	@mariadb --no-defaults -h 127.0.0.1 -P $(MYSQL_PORT) -u root -e 'CREATE DATABASE IF NOT EXISTS ai_gateway'
	@if [ -f $(RUN_PREFIX)/logs/nginx.pid ] && kill -0 $$(cat $(RUN_PREFIX)/logs/nginx.pid) 2>/dev/null; then \
	    echo "stopping the gateway left running from an earlier 'make run'"; \
	    kill -QUIT $$(cat $(RUN_PREFIX)/logs/nginx.pid); sleep 1; \
	fi
	@$(OBJS)/nginx -p $(RUN_PREFIX)/ -c conf/nginx.conf -t -q
	@echo; echo "AI gateway on http://127.0.0.1:8080, config center on http://127.0.0.1:8001/api/v1/,"
	@echo "dashboard on http://127.0.0.1:3000/"
	@echo "(Ctrl-C stops them; logs in vendor/run/logs/)."; echo
	@echo "  admin user: admin   password: $$(cat $(RUN_PREFIX)/admin-password)   (vendor/run/admin-password)"
	@echo
	@echo "  curl http://127.0.0.1:8080/v1/chat/completions \\"
	@echo "    -H 'Authorization: Bearer sk-gateway-demo' -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"
	@echo
	@echo "  curl -c cookies -H 'Content-Type: application/json' http://127.0.0.1:8001/api/v1/auth/login \\"
	@echo "    -d '{\"username\":\"admin\",\"password\":\"'$$(cat $(RUN_PREFIX)/admin-password)'\"}'"
	@echo "  (README \"Config center\" goes on from there)"
	@echo
	exec $(OBJS)/nginx -p $(RUN_PREFIX)/ -c conf/nginx.conf -g 'daemon off;'

stop: ## stop a gateway started by 'make run' in the background
	@if [ -f $(RUN_PREFIX)/logs/nginx.pid ]; then kill -QUIT $$(cat $(RUN_PREFIX)/logs/nginx.pid) 2>/dev/null || true; fi

check: deps ## formatting and lints (cargo fmt --check, clippy -D warnings)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings

unittest: deps ## unit tests of the pure core (no nginx needed)
	$(CARGO) test --release --locked

sdk-deps: deps ## the OpenAI and Anthropic Python SDKs (and h2) in vendor/sdk-venv (for t/096-sdk.t, t/170-http2.t)
	@if ! $(SDK_VENV)/bin/python -c 'import openai, anthropic' 2>/dev/null \
	    || [ "$$(cat $(SDK_VENV)/.packages 2>/dev/null)" != "$(SDK_PACKAGES)" ]; then \
	    rm -rf $(SDK_VENV) && /usr/bin/python3 -m venv $(SDK_VENV) && \
	    $(SDK_VENV)/bin/pip install -q --disable-pip-version-check $(SDK_PACKAGES) </dev/null && \
	    echo "$(SDK_PACKAGES)" > $(SDK_VENV)/.packages; \
	fi

fuzz-deps: deps ## schemathesis in vendor/fuzz-venv (for t/133-admin-fuzz.t)
	@if ! $(FUZZ_VENV)/bin/schemathesis --version >/dev/null 2>&1 \
	    || [ "$$(cat $(FUZZ_VENV)/.packages 2>/dev/null)" != "$(FUZZ_PACKAGES)" ]; then \
	    rm -rf $(FUZZ_VENV) && /usr/bin/python3 -m venv $(FUZZ_VENV) && \
	    $(FUZZ_VENV)/bin/pip install -q --disable-pip-version-check $(FUZZ_PACKAGES) </dev/null && \
	    echo "$(FUZZ_PACKAGES)" > $(FUZZ_VENV)/.packages; \
	fi

browser-deps: deps ## Debian's chromium and playwright-core in t/browser/node_modules (for t/160-dashboard.t)
	@$(call apt_install,$(BROWSER_PACKAGES))
	@# Debian 12's own nodejs (18) is enough: playwright-core is pinned to a release that runs on it
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then $(call apt_install,nodejs npm); fi
	@if [ ! -d $(BROWSER_DIR)/node_modules ] || [ $(BROWSER_DIR)/package-lock.json -nt $(BROWSER_DIR)/node_modules ]; then \
	    cd $(BROWSER_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund </dev/null && touch node_modules; \
	fi

redis: deps ## make sure a Redis answers on 127.0.0.1:6379 (else start one, data in vendor/redis)
	@if [ "$$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != PONG ]; then \
	    mkdir -p $(REDIS_DIR) && \
	    redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
	        --pidfile $(REDIS_DIR)/redis.pid --dir $(REDIS_DIR) --logfile $(REDIS_DIR)/redis.log && \
	    for i in $$(seq 50); do \
	        [ "$$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] && break; sleep 0.1; \
	    done; \
	    [ "$$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] \
	        || { echo "redis-server started but no PONG on 127.0.0.1:6379 within 5 s (see $(REDIS_DIR)/redis.log)"; exit 1; }; \
	    echo "started redis-server on 127.0.0.1:6379 (pid $$(cat $(REDIS_DIR)/redis.pid), log $(REDIS_DIR)/redis.log)"; \
	fi

mariadb: deps ## make sure a MariaDB answers on 127.0.0.1:$(MYSQL_PORT) as root (else start one, data in vendor/mariadb)
	@if ! $(MARIADB_UP); then \
	    mkdir -p $(MARIADB_DIR) && \
	    if [ ! -d $(MARIADB_DIR)/data/mysql ]; then \
	        mariadb-install-db --no-defaults --datadir=$(MARIADB_DIR)/data --user="$$(id -un)" \
	            --auth-root-authentication-method=normal --skip-test-db >$(MARIADB_DIR)/install.log 2>&1 \
	            || { tail -20 $(MARIADB_DIR)/install.log; exit 1; }; \
	    fi; \
	    (setsid /usr/sbin/mariadbd --no-defaults --datadir=$(MARIADB_DIR)/data --user="$$(id -un)" \
	        --port=$(MYSQL_PORT) --bind-address=127.0.0.1 --socket=$(MARIADB_DIR)/mariadb.sock \
	        --pid-file=$(MARIADB_DIR)/mariadb.pid --log-error=$(MARIADB_DIR)/mariadb.log \
	        --skip-log-bin --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &); \
	    for i in $$(seq 100); do $(MARIADB_UP) && break; sleep 0.1; done; \
	    $(MARIADB_UP) || { echo "mariadbd started but does not answer on 127.0.0.1:$(MYSQL_PORT) within 10 s (see $(MARIADB_DIR)/mariadb.log)"; exit 1; }; \
	    echo "started mariadbd on 127.0.0.1:$(MYSQL_PORT) (pid $$(cat $(MARIADB_DIR)/mariadb.pid), log $(MARIADB_DIR)/mariadb.log)"; \
	fi

publish-config: ## publish FILE=<json> to Redis (tools/publish-config)
	@[ -n "$(FILE)" ] || { echo "usage: make publish-config FILE=<json> [PUBLISH_ARGS='-u redis://host:port -p prefix -e epoch']"; exit 1; }
	tools/publish-config $(PUBLISH_ARGS) $(FILE)

inttest: build sdk-deps fuzz-deps browser-deps redis mariadb ## t/ suite (and the runner's own t/selftest) against vendor/objs/nginx with the module
	AI_GATEWAY_PYTHON=$(CURDIR)/$(SDK_VENV)/bin/python \
	AI_GATEWAY_SCHEMATHESIS=$(CURDIR)/$(FUZZ_VENV)/bin/schemathesis \
	AI_GATEWAY_NODE=$$(command -v node) AI_GATEWAY_CHROMIUM=/usr/bin/chromium \
	TEST_NGINX_BINARY=$(CURDIR)/$(OBJS)/nginx \
	TEST_NGINX_LOAD_MODULES=$(CURDIR)/$(OBJS)/$(MODULE).so \
	TEST_NGINX_SERVER_PORT=$(TEST_PORT) TEST_NGINX_ROOT=$(CURDIR) \
	PERL5LIB=$(CURDIR)/t/lib/compat prove -r t/

inttest-debian: debian sdk-deps fuzz-deps browser-deps redis mariadb ## the same t/ suite with Debian's /usr/sbin/nginx and the Debian-built module
	AI_GATEWAY_PYTHON=$(CURDIR)/$(SDK_VENV)/bin/python \
	AI_GATEWAY_SCHEMATHESIS=$(CURDIR)/$(FUZZ_VENV)/bin/schemathesis \
	AI_GATEWAY_NODE=$$(command -v node) AI_GATEWAY_CHROMIUM=/usr/bin/chromium \
	TEST_NGINX_BINARY=/usr/sbin/nginx \
	TEST_NGINX_LOAD_MODULES=$(CURDIR)/$(DEB_DIR)/$(MODULE).so \
	TEST_NGINX_SERVER_PORT=$(TEST_PORT) TEST_NGINX_ROOT=$(CURDIR) \
	TEST_NGINX_SERVROOT=$(CURDIR)/t/servroot-debian \
	PERL5LIB=$(CURDIR)/t/lib/compat prove t/*.t

bench-deps: deps
	@$(call apt_install,$(BENCH_PACKAGES))

bench: build debian bench-deps ## plain nginx vs the gateway (and a Lua layer on Debian's nginx) + core micro-benchmarks -> docs/benchmarks.md (BENCH_QUICK=1: smoke run)
	python3 bench/bench.py

bench-smoke: build debian bench-deps ## a one-second smoke run of the benchmark harness (timings mean nothing)
	BENCH_QUICK=1 python3 bench/bench.py

test: check unittest inttest inttest-debian bench-smoke ## everything: lints, unit tests, t/ on both nginx builds, bench smoke

clean: ## remove build outputs
	$(CARGO) clean
	rm -rf target-debian vendor/objs vendor/debian vendor/run t/servroot*
