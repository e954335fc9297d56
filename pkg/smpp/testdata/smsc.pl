#!/usr/bin/perl
# smsc.pl - SMSC test double for github.com/dmgrid/dmgrid/pkg/smpp.
#
# Every PDU the Go client sends is decoded here by Net::SMPP (read_pdu), an
# implementation independent of the Go codec, and every PDU sent back is
# built by Net::SMPP's encoders -- except the deliberately malformed ones of
# --malformed, which are raw bytes.
#
# usage: smsc.pl PORT [options]
#   PORT                 TCP port on 127.0.0.1 (0: let the kernel choose)
#   --out FILE           write the JSON event lines to FILE instead of stdout
#   --system-id ID       accept only this system_id (else ESME_RINVSYSID)
#   --password PW        accept only this password (else ESME_RINVPASWD)
#   --throttle N         answer the first N submit_sm with --throttle-status
#   --throttle-status S  default 0x58 (ESME_RTHROTTLED)
#   --receipt MODE       both (default) | text | tlv | none
#   --receipt-delay-ms N delay before each delivery receipt (default 50)
#   --enquire-ms N       send our own enquire_link every N ms once bound
#   --malformed          after the bind, inject malformed PDUs
#   --silent N           do not answer the first N submit_sm at all
#   --short-length       on the first connection, after the bind, send a
#                        header with command_length 8 (stream desync)
#   --unbind-after-ms N  on the first connection, send unbind N ms after bind
#   --max-seconds N      exit after N seconds (default 120)
#
# stdout: "READY <port>" once listening, then one JSON object per line:
#   {"event":"connect"} {"event":"bind",...} {"event":"submit_sm",...}
#   {"event":"enquire_link"} {"event":"unbind"} {"event":"disconnect"}
#   {"event":"<resp name>","seq":N,"status":N} for responses from the client.
# The script exits when stdin reaches EOF (the Go harness holds it open), so
# it never outlives the test process.
use strict;
use warnings;
use Net::SMPP;
use IO::Select;
use JSON::PP;
use Getopt::Long qw(GetOptionsFromArray);
use Time::HiRes qw(time);

my @args = @ARGV;
my $port = shift @args;
die "usage: smsc.pl PORT [options]\n" unless defined $port && $port =~ /^\d+$/;
my %opt = (
    'throttle'         => 0,
    'throttle-status'  => '0x58',
    'receipt'          => 'both',
    'receipt-delay-ms' => 50,
    'enquire-ms'       => 0,
    'max-seconds'      => 120,
    'silent'           => 0,
    'unbind-after-ms'  => 0,
);
GetOptionsFromArray(\@args, \%opt,
    'out=s', 'system-id=s', 'password=s', 'throttle=i', 'throttle-status=s',
    'receipt=s', 'receipt-delay-ms=i', 'enquire-ms=i', 'malformed', 'max-seconds=i',
    'silent=i', 'short-length', 'unbind-after-ms=i')
    or die "bad options\n";
my $throttle_status = $opt{'throttle-status'} =~ /^0x/i ? hex($opt{'throttle-status'}) : $opt{'throttle-status'};

my $out = \*STDOUT;
if (defined $opt{out}) {
    open($out, '>>', $opt{out}) or die "open $opt{out}: $!\n";
}
$out->autoflush(1);
STDOUT->autoflush(1);
my $json = JSON::PP->new->canonical;

sub emit { print {$out} $json->encode($_[0]), "\n" }

my $listener = Net::SMPP->new_listen('127.0.0.1', port => $port, smpp_version => 0x34)
    or die "listen on $port: $!\n";
print STDOUT "READY ", $listener->sockport, "\n";

my $sel = IO::Select->new($listener, \*STDIN);
my %conn;     # fileno => { sock, bound }
my @timers;   # [ when, fileno, code ]
my $submits = 0;
my $binds = 0;
my $msgno = 0;
my $deadline = time + $opt{'max-seconds'};

my %resp_names = (
    0x80000000 => 'generic_nack', 0x80000005 => 'deliver_sm_resp',
    0x80000015 => 'enquire_link_resp', 0x80000006 => 'unbind_resp',
);

sub drop {
    my ($fh, $why) = @_;
    my $fd = fileno($fh);
    $sel->remove($fh);
    delete $conn{$fd};
    @timers = grep { $_->[1] != $fd } @timers;
    close($fh);
    emit({ event => 'disconnect', reason => $why });
}

sub hexstr { return unpack('H*', defined $_[0] ? $_[0] : '') }

# Raw PDU bytes for --malformed: header fields given explicitly.
sub raw_pdu {
    my ($len, $cmd, $seq, $body) = @_;
    return pack('NNNN', $len, $cmd, 0, $seq) . $body;
}

sub inject_malformed {
    my ($c) = @_;
    # 1. unknown command_id 0x000000AA, consistent length -> generic_nack ESME_RINVCMDID
    $c->syswrite(raw_pdu(20, 0x000000AA, 0x7F000001, "\xDE\xAD\xBE\xEF"));
    # 2. deliver_sm whose source_addr runs past command_length -> ESME_RINVCMDLEN
    $c->syswrite(raw_pdu(16 + 8, 0x00000005, 0x7F000002, "\0\x01\x0112345"));
    # 3. command_length 70000 (over the 64 KiB limit), body sent in full -> ESME_RINVCMDLEN
    $c->syswrite(raw_pdu(70000, 0x00000005, 0x7F000003, 'x' x (70000 - 16)));
    # 4. deliver_sm whose TLV claims 10 octets but has 2 -> deliver_sm_resp ESME_RINVOPTPARSTREAM
    my $body = pack('Z*CCZ*CCZ*CCCZ*Z*CCCCCa*', '', 1, 1, '111', 1, 1, '222',
                    0x04, 0, 0, '', '', 0, 0, 0, 0, 2, 'hi') . pack('nn', 0x001E, 10) . 'ab';
    $c->syswrite(raw_pdu(16 + length($body), 0x00000005, 0x7F000004, $body));
    emit({ event => 'malformed_sent' });
}

sub receipt_for {
    my ($c, $pdu, $id) = @_;
    my $now = sprintf('%02d%02d%02d%02d%02d', (localtime)[5] % 100, (localtime)[4] + 1, (localtime)[3], (localtime)[2], (localtime)[1]);
    my $mode = $opt{receipt};
    my @args = (
        async            => 1,
        service_type     => '',
        source_addr_ton  => $pdu->{dest_addr_ton},
        source_addr_npi  => $pdu->{dest_addr_npi},
        source_addr      => $pdu->{destination_addr},
        dest_addr_ton    => $pdu->{source_addr_ton},
        dest_addr_npi    => $pdu->{source_addr_npi},
        destination_addr => $pdu->{source_addr},
        esm_class        => 0x04,    # SMSC delivery receipt (5.2.12)
        data_coding      => 0,
        registered_delivery => 0,
        short_message    => '',
    );
    if ($mode eq 'both' || $mode eq 'text') {
        $args[-1] = "id:$id sub:001 dlvrd:001 submit date:$now done date:$now stat:DELIVRD err:000 text:push";
    }
    if ($mode eq 'both' || $mode eq 'tlv') {
        push @args, receipted_message_id => "$id\0", message_state => chr(2);
    }
    my $seq = $c->deliver_sm(@args);
    emit({ event => 'deliver_sm_sent', seq => 0 + $seq, message_id => $id });
}

sub handle {
    my ($c, $pdu) = @_;
    my $fd = fileno($c);
    my $cmd = $pdu->{cmd};
    my $seq = $pdu->{seq};
    if ($cmd == 0x00000002 || $cmd == 0x00000009 || $cmd == 0x00000001) {
        my $status = 0;
        $status = 0x0F if defined $opt{'system-id'} && $pdu->{system_id} ne $opt{'system-id'};
        $status = 0x0E if !$status && defined $opt{password} && $pdu->{password} ne $opt{password};
        emit({ event => 'bind', command_id => 0 + $cmd, seq => 0 + $seq, status => $status,
               system_id => "$pdu->{system_id}", password => "$pdu->{password}",
               system_type => "$pdu->{system_type}", interface_version => 0 + $pdu->{interface_version},
               addr_ton => 0 + $pdu->{addr_ton}, addr_npi => 0 + $pdu->{addr_npi},
               address_range => "$pdu->{address_range}" });
        my %m = (0x00000001 => 'bind_receiver_resp', 0x00000002 => 'bind_transmitter_resp',
                 0x00000009 => 'bind_transceiver_resp');
        my $meth = $m{$cmd};
        $c->$meth(seq => $seq, status => $status, system_id => 'perlsmsc');
        if ($status == 0) {
            $conn{$fd}{bound} = 1;
            $binds++;
            inject_malformed($c) if $opt{malformed};
            if ($binds == 1 && $opt{'short-length'}) {
                $c->syswrite(raw_pdu(8, 0x00000015, 0x7F000010, ''));
                emit({ event => 'short_length_sent' });
            }
            if ($binds == 1 && $opt{'unbind-after-ms'} > 0) {
                push @timers, [ time + $opt{'unbind-after-ms'} / 1000, $fd, sub {
                    my $s = $c->unbind(async => 1);
                    emit({ event => 'unbind_sent', seq => 0 + $s });
                } ];
            }
            if ($opt{'enquire-ms'} > 0) {
                my $tick; $tick = sub {
                    my $s = $c->enquire_link(async => 1);
                    emit({ event => 'enquire_link_sent', seq => 0 + $s });
                    push @timers, [ time + $opt{'enquire-ms'} / 1000, $fd, $tick ];
                };
                push @timers, [ time + $opt{'enquire-ms'} / 1000, $fd, $tick ];
            }
        }
    } elsif ($cmd == 0x00000015) {
        $c->enquire_link_resp(seq => $seq);
        emit({ event => 'enquire_link', seq => 0 + $seq });
    } elsif ($cmd == 0x00000004) {
        my %ev = (event => 'submit_sm', seq => 0 + $seq, command_length => 16 + length($pdu->{data}));
        $ev{$_} = "$pdu->{$_}" for qw(service_type source_addr destination_addr schedule_delivery_time validity_period);
        $ev{$_} = 0 + $pdu->{$_} for qw(source_addr_ton source_addr_npi dest_addr_ton dest_addr_npi esm_class
                                      protocol_id priority_flag registered_delivery replace_if_present_flag
                                      data_coding sm_default_msg_id);
        $ev{short_message} = hexstr($pdu->{short_message});
        $ev{sm_length} = length($pdu->{short_message});
        my %tlv;
        for my $k (keys %$pdu) { $tlv{sprintf('%04x', $k)} = hexstr($pdu->{$k}) if $k =~ /^\d+$/ }
        $ev{tlvs} = \%tlv;
        $submits++;
        if ($submits <= $opt{silent}) {
            $ev{status} = -1;    # not answered
        } elsif (!$conn{$fd}{bound}) {
            $c->resp_backend(0x80000004, '', $c, seq => $seq, status => 0x04);   # ESME_RINVBNDSTS
            $ev{status} = 0x04;
        } elsif ($submits <= $opt{throttle}) {
            # 4.4.2: no body when command_status is not 0.
            $c->resp_backend(0x80000004, '', $c, seq => $seq, status => $throttle_status);
            $ev{status} = 0 + $throttle_status;
        } else {
            my $id = sprintf('P%dM%06d', $$, ++$msgno);
            $c->submit_sm_resp(seq => $seq, message_id => $id);
            $ev{status} = 0;
            $ev{message_id} = $id;
            if ($opt{receipt} ne 'none' && ($pdu->{registered_delivery} & 0x03)) {
                my $p = { %$pdu };
                push @timers, [ time + $opt{'receipt-delay-ms'} / 1000, $fd, sub { receipt_for($c, $p, $id) } ];
            }
        }
        emit(\%ev);
    } elsif ($cmd == 0x00000006) {
        $c->unbind_resp(seq => $seq);
        emit({ event => 'unbind', seq => 0 + $seq });
        drop($c, 'unbind');
    } elsif (exists $resp_names{$cmd}) {
        my %ev = (event => $resp_names{$cmd}, seq => 0 + $seq, status => 0 + $pdu->{status});
        $ev{message_id} = "$pdu->{message_id}" if defined $pdu->{message_id};
        emit(\%ev);
    } else {
        emit({ event => 'unexpected', command_id => 0 + $cmd, seq => 0 + $seq });
        $c->generic_nack(seq => $seq, status => 0x03);
    }
}

while (time < $deadline) {
    my $wait = 0.2;
    for my $t (@timers) { my $d = $t->[0] - time; $wait = $d if $d < $wait }
    $wait = 0 if $wait < 0;
    for my $fh ($sel->can_read($wait)) {
        if ($fh == $listener) {
            my $c = $listener->accept or next;
            $sel->add($c);
            $conn{fileno($c)} = { sock => $c, bound => 0 };
            emit({ event => 'connect' });
        } elsif ($fh == \*STDIN) {
            my $n = sysread(STDIN, my $buf, 4096);
            exit 0 if !$n;
        } else {
            my $pdu = $fh->read_pdu();
            if (!$pdu) { drop($fh, 'eof'); next }
            handle($fh, $pdu);
        }
    }
    my $now = time;
    my @due = grep { $_->[0] <= $now } @timers;
    @timers = grep { $_->[0] > $now } @timers;
    for my $t (@due) { $t->[2]->() if exists $conn{$t->[1]} }
}
exit 0;
