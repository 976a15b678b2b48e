package Test::AIGateway::MySQL;

# MariaDB/MySQL for the config center's tests: a database of the test's own on the shared
# server (127.0.0.1:3306 as root without a password, what `make mariadb` provides; override
# with TEST_AIGW_MYSQL_PORT), queries through the `mariadb` client, and a private mariadbd
# (its own data directory and port) for tests that stop the server.

use strict;
use warnings;
use Exporter 'import';
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep);
use POSIX ();

our @EXPORT = qw(mysql_port mysql_client create_db drop_db sql sql_rows start_mariadb);

sub mysql_port { $ENV{TEST_AIGW_MYSQL_PORT} || 3306 }

# The client program (mariadb, else mysql).
sub mysql_client {
    for my $name (qw(mariadb mysql)) {
        my ($bin) = grep { -x } map { "$_/$name" } split(/:/, $ENV{PATH}), '/usr/bin';
        return $bin if $bin;
    }
    die "no mariadb/mysql client (make deps installs mariadb-server)\n";
}

# Runs $sql (on $db when given) against 127.0.0.1:$port; returns its output (tab-separated
# rows, no header). Dies on a client error.
sub sql {
    my ($db, $sql, $port) = @_;
    $port //= mysql_port();
    my @cmd = (mysql_client(), '--no-defaults', '-h', '127.0.0.1', '-P', $port, '-u', 'root',
        '-N', '-B', ($db ? ('-D', $db) : ()), '-e', $sql);
    my $pid = open(my $out, '-|') // die "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        { exec @cmd; }
        POSIX::_exit(127);
    }
    local $/;
    my $text = <$out> // '';
    close $out;
    die "sql failed ($?): $text\n" if $?;
    return $text;
}

# Rows as array refs.
sub sql_rows {
    my $text = sql(@_);
    return map { [split /\t/, $_, -1] } grep { length } split /\n/, $text;
}

sub create_db {
    my ($name, $port) = @_;
    sql('', "DROP DATABASE IF EXISTS `$name`; CREATE DATABASE `$name`", $port);
    return $name;
}

sub drop_db {
    my ($name, $port) = @_;
    eval { sql('', "DROP DATABASE IF EXISTS `$name`", $port) };
}

# A private mariadbd on 127.0.0.1:$port with its data under $dir; returns its pid (the
# caller stops it by pid). Takes about 2 s the first time (mariadb-install-db).
sub start_mariadb {
    my ($port, $dir) = @_;
    my ($server) = grep { -x } ('/usr/sbin/mariadbd', '/usr/sbin/mysqld');
    die "mariadbd is not installed (make deps installs mariadb-server)\n" unless $server;
    my $user = getpwuid($<);
    make_path($dir);
    unless (-d "$dir/data/mysql") {
        system("mariadb-install-db --no-defaults --datadir=$dir/data --user=$user "
            . "--auth-root-authentication-method=normal --skip-test-db >$dir/install.log 2>&1") == 0
            or die "mariadb-install-db failed (see $dir/install.log)\n";
    }
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', "$dir/mariadbd.out";
        open STDERR, '>&', \*STDOUT;
        { exec $server, '--no-defaults', "--datadir=$dir/data", "--user=$user", "--port=$port",
            '--bind-address=127.0.0.1', "--socket=$dir/mariadb.sock", "--pid-file=$dir/mariadb.pid",
            "--log-error=$dir/mariadb.log", '--skip-log-bin', '--innodb-buffer-pool-size=32M'; }
        POSIX::_exit(127);
    }
    for (1 .. 200) {
        return $pid if eval { sql('', 'SELECT 1', $port); 1 };
        sleep 0.05;
    }
    die "mariadbd on $port did not start (see $dir/mariadb.log)\n";
}

1;
