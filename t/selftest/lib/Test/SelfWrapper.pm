package Test::SelfWrapper;

# A project wrapper as upstream users write them (t/selftest's 004-wrapper.t uses it).
use Test::Nginx::Socket -Base;

our $location = <<'_EOC_';
    location = /shared {
        return 200 "shared\n";
    }
_EOC_

our @EXPORT = qw(wrapper_helper);

sub wrapper_helper () { 'helper' }

no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[error]\n[alert]\n");
    }
    my $http_config = $block->http_config // '';
    $block->set_value("http_config", $http_config . "    map \$uri \$wrapper_var { default 'from the wrapper'; }\n");
});

1;
