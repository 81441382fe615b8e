# credgate build and test entry points. `make test` is the one test command.
PKGS := ./identity/... ./policy/... ./providers/... ./injectors/... ./internal/yamlstrict/... ./internal/module/...
.PHONY: test
test:
	@test -z "$$(gofmt -l identity policy providers injectors internal/yamlstrict internal/module)" || (gofmt -l identity policy providers injectors internal; exit 1)
	go vet $(PKGS)
	go test -race -count=1 $(PKGS)
