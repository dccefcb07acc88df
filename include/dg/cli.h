/*
 * cli.h -- the maintenance subcommands of the duckgrid binary (main.c
 * dispatches): `duckgrid snapshot`, `duckgrid restore`, `duckgrid import` and
 * `duckgrid export`. argv excludes
 * the subcommand; each returns the process exit code (0 done, 1 failed,
 * 2 bad usage).
 */
#ifndef DG_CLI_H
#define DG_CLI_H

int dg_cli_snapshot(int argc, char **argv);
int dg_cli_restore(int argc, char **argv);
/* transfer.c: the import and export routes from the command line. */
int dg_cli_import(int argc, char **argv);
int dg_cli_export(int argc, char **argv);

#endif
