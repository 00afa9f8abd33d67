# The web UI (registry/ui). Its browser test (e2e/ui_test.go) drives Debian's
# chromium headless through chromedp; apt installs it once, and the file
# target makes a second run do nothing.

CHROMIUM := /usr/bin/chromium

TEST_DEPS += $(CHROMIUM)
BENCH_TARGETS += bench-ui

.PHONY: ui-screenshots bench-ui

$(CHROMIUM):
	test -e $@ || (apt-get update && apt-get install -y chromium)
	test -e $@

# The browser test again, saving a PNG of every page into docs/ui/.
ui-screenshots: $(CHROMIUM) $(ORT_LIB)
	MODELCTL_UI_SCREENSHOTS=$(ROOT)/docs/ui $(GO) test -count=1 -timeout 10m -run 'TestUIInBrowser$$' ./e2e/

# Render time of a repository page with 1,000 tags (docs/ui.md), on the
# filesystem and on S3 (versitygw).
bench-ui: $(VERSITYGW) $(TOOLBIN)/versitygw
	$(GO) test -count=1 -run 'TestRepositoryPageRenderTime$$' -bench 'RepositoryPage1000TagsS3$$' -benchtime 5x -v ./registry/ui/ | grep -E 'repository page|ok|FAIL'
