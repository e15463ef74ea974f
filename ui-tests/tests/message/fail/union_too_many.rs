//! A union's type is a `ubyte` whose 0 is NONE: at most 255 members.

#[derive(framework::Message)]
struct T {
    x: u32,
}

#[rustfmt::skip]
#[derive(framework::Message)]
enum Big {
    V0(T), V1(T), V2(T), V3(T), V4(T), V5(T), V6(T), V7(T), V8(T), V9(T), V10(T), V11(T), V12(T), V13(T), V14(T), V15(T), V16(T), V17(T), V18(T), V19(T), V20(T), V21(T), V22(T), V23(T), V24(T), V25(T), V26(T), V27(T), V28(T), V29(T), V30(T), V31(T), V32(T), V33(T), V34(T), V35(T), V36(T), V37(T), V38(T), V39(T), V40(T), V41(T), V42(T), V43(T), V44(T), V45(T), V46(T), V47(T), V48(T), V49(T), V50(T), V51(T), V52(T), V53(T), V54(T), V55(T), V56(T), V57(T), V58(T), V59(T), V60(T), V61(T), V62(T), V63(T), V64(T), V65(T), V66(T), V67(T), V68(T), V69(T), V70(T), V71(T), V72(T), V73(T), V74(T), V75(T), V76(T), V77(T), V78(T), V79(T), V80(T), V81(T), V82(T), V83(T), V84(T), V85(T), V86(T), V87(T), V88(T), V89(T), V90(T), V91(T), V92(T), V93(T), V94(T), V95(T), V96(T), V97(T), V98(T), V99(T), V100(T), V101(T), V102(T), V103(T), V104(T), V105(T), V106(T), V107(T), V108(T), V109(T), V110(T), V111(T), V112(T), V113(T), V114(T), V115(T), V116(T), V117(T), V118(T), V119(T), V120(T), V121(T), V122(T), V123(T), V124(T), V125(T), V126(T), V127(T), V128(T), V129(T), V130(T), V131(T), V132(T), V133(T), V134(T), V135(T), V136(T), V137(T), V138(T), V139(T), V140(T), V141(T), V142(T), V143(T), V144(T), V145(T), V146(T), V147(T), V148(T), V149(T), V150(T), V151(T), V152(T), V153(T), V154(T), V155(T), V156(T), V157(T), V158(T), V159(T), V160(T), V161(T), V162(T), V163(T), V164(T), V165(T), V166(T), V167(T), V168(T), V169(T), V170(T), V171(T), V172(T), V173(T), V174(T), V175(T), V176(T), V177(T), V178(T), V179(T), V180(T), V181(T), V182(T), V183(T), V184(T), V185(T), V186(T), V187(T), V188(T), V189(T), V190(T), V191(T), V192(T), V193(T), V194(T), V195(T), V196(T), V197(T), V198(T), V199(T), V200(T), V201(T), V202(T), V203(T), V204(T), V205(T), V206(T), V207(T), V208(T), V209(T), V210(T), V211(T), V212(T), V213(T), V214(T), V215(T), V216(T), V217(T), V218(T), V219(T), V220(T), V221(T), V222(T), V223(T), V224(T), V225(T), V226(T), V227(T), V228(T), V229(T), V230(T), V231(T), V232(T), V233(T), V234(T), V235(T), V236(T), V237(T), V238(T), V239(T), V240(T), V241(T), V242(T), V243(T), V244(T), V245(T), V246(T), V247(T), V248(T), V249(T), V250(T), V251(T), V252(T), V253(T), V254(T), V255(T)
}

fn main() {}
