/*
 * cli.h -- the maintenance subcommands of the duckgrid binary (main.c
 * dispatches): `duckgrid snapshot` and `duckgrid restore`. argv excludes
 * the subcommand; each returns the process exit code (0 done, 1 failed,
 * 2 bad usage).
 */
#ifndef DG_CLI_H
#define DG_CLI_H

int dg_cli_snapshot(int argc, char **argv);
int dg_cli_restore(int argc, char **argv);

#endif
