"""What of a source's postgresql.conf an import by base backup keeps: display and locale
settings only (the last of each wins, a locale this host lacks is dropped); nothing that
loads code, archives, replicates or listens."""

from __future__ import annotations

from strata.local.base_backup import kept_settings

SOURCE = """
# a source's configuration
listen_addresses = '*'
shared_preload_libraries = 'pg_stat_statements,auto_explain'   # loads C code
archive_command = 'cp %p /mnt/archive/%f'
primary_conninfo = 'host=elsewhere'
DateStyle = 'iso, mdy'
timezone='Europe/Paris'
timezone = 'Etc/UTC'  # the last one wins
lc_messages = 'C.UTF-8'
lc_monetary = 'xx_NOWHERE.UTF-8'
default_text_search_config 'pg_catalog.english'
include_dir = 'conf.d'
"""


def test_only_display_and_known_locale_settings_are_kept() -> None:
    assert kept_settings(SOURCE) == {
        "datestyle": "'iso, mdy'", "timezone": "'Etc/UTC'", "lc_messages": "'C.UTF-8'",
        "default_text_search_config": "'pg_catalog.english'"}


def test_an_empty_configuration_keeps_nothing() -> None:
    assert kept_settings("# nothing\n\n") == {}
