"""What differs between the lab's two flavors for the benchmarks: how the lab is
started, how the admin client connects, how rows are generated, and which dump
tool an operator of that flavor would run.

MariaDB: Debian 12's own client tools; rows from the Sequence engine.
MySQL 9.7: the client tools of the MySQL root `scripts/mysql-root` prepared
(run through that root's loader, as the lab runs mysqld); rows from a recursive
common table expression; MySQL's own mysqldump with `--source-data`.
"""

import os

FLAVORS = ("mariadb", "mysql")


def mysql_root():
    return os.environ.get("CUTOVER_MYSQL_ROOT", "/var/cache/cutover/mysql-9.7")


def root_command(binary):
    """A client program of the MySQL root, run through the root's loader."""
    root = mysql_root()
    return [os.path.join(root, "lib64", "ld-linux-x86-64.so.2"), "--library-path",
            f"{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu",
            os.path.join(root, "usr", "bin", binary)]


def lab_up(flavor):
    """`cutover lab up` arguments selecting the flavor."""
    return ["--flavor", flavor]


def _option_file(path, env, transport):
    """A 0600 option file so passwords stay off command lines."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write("[client]\nuser={}\npassword={}\nport=13306\n{}\n".format(
            env["CUTOVER_LAB_ADMIN_USER"], env["CUTOVER_LAB_ADMIN_PASSWORD"], transport))
    return path


def defaults_file(env, directory, flavor):
    """The admin's option file for Debian's `mariadb` client. MySQL's admin
    account authenticates with caching_sha2_password: over TLS (not checked:
    the lab's own CA on loopback) no RSA key exchange is needed."""
    transport = "skip-ssl" if flavor == "mariadb" else "ssl\nssl-verify-server-cert=0"
    return _option_file(os.path.join(directory, "admin.cnf"), env, transport)


def mysqldump_defaults_file(env, directory, flavor):
    """MySQL's own mysqldump spells TLS `ssl-mode`."""
    if flavor == "mariadb":
        return defaults_file(env, directory, flavor)
    return _option_file(os.path.join(directory, "mysqldump.cnf"), env, "ssl-mode=REQUIRED")


def numbers(flavor, db, first, last):
    """A table of the integers first..=last in a column `seq`."""
    if flavor == "mariadb":
        return f"{db}.seq_{first}_to_{last}"
    return (f"(WITH RECURSIVE numbers (seq) AS (SELECT {first} UNION ALL SELECT seq + 1 "
            f"FROM numbers WHERE seq < {last}) SELECT seq FROM numbers) AS counted")


def session_setup(flavor):
    """Statements before generating rows in one session."""
    if flavor == "mariadb":
        return []
    return ["SET SESSION cte_max_recursion_depth = 10000000"]


def mysqldump(flavor):
    """The dump command an operator of this flavor runs, and its flag for the
    source's binary log position (MySQL 8.4 removed `--master-data`'s
    `SHOW MASTER STATUS`)."""
    if flavor == "mariadb":
        return ["mysqldump"], "--master-data=2"
    return root_command("mysqldump"), "--source-data=2"


def copy_only(flavor):
    """mysqldump options for a plain copy loaded with sql_log_bin = 0: MySQL's
    would otherwise set the targets' GTID_PURGED, which a second copy refuses."""
    return [] if flavor == "mariadb" else ["--set-gtid-purged=OFF"]
