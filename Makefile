# Makefile — PGXS build of the usage_tracking extension, its gateway and tools.
EXTENSION   = usage_tracking
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big  = usage_tracking
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# Releases are immutable: the 1.0 install script as released, then one
# hand-written upgrade script per release.  The current version's install
# script is the base followed by every upgrade step, in order, so a fresh
# install runs exactly what an upgraded one ran.
BASE_SQL    = sql/$(EXTENSION)--1.0.sql
UPGRADES    = $(shell ls sql/$(EXTENSION)--*--*.sql | sort -V)
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA        = $(BASE_SQL) $(UPGRADES)

REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --outputdir=test --load-extension=pgcrypto --load-extension=$(EXTENSION)
ISOLATION      = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --outputdir=test/output_iso --load-extension=$(EXTENSION)

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -Isrc
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

EXTRA_CLEAN = test/results test/output_iso test/regression.diffs test/regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the shared headers
$(OBJS): $(wildcard src/*.h)

$(DATA_built): $(BASE_SQL) $(UPGRADES) $(EXTENSION).control
	bash tools/build_install_sql.sh $(EXTVERSION) > $@

# Programs that live in their own folder with their own Makefile
# (gateway/, notifier/) are built with the extension.
PROGRAM_DIRS = $(patsubst %/Makefile,%,$(wildcard gateway/Makefile notifier/Makefile))
all: programs
programs:
	@for d in $(PROGRAM_DIRS); do $(MAKE) -C $$d || exit 1; done
clean: clean-programs
clean-programs:
	@for d in $(PROGRAM_DIRS); do $(MAKE) -C $$d clean || exit 1; done

.PHONY: programs clean-programs test demo bench fuzz soak
test:
	bash tools/test.sh
demo:
	bash tools/demo.sh
bench:
	bash bench/run.sh
fuzz:
	bash fuzz/run.sh
soak:
	bash tools/soak.sh
