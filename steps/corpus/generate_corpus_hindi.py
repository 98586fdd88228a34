#!/usr/bin/env python3
"""Generate the bundled Hindi sample speech corpus with espeak-ng.

The sibling of ``generate_corpus.py``: the same machinery (styles, emphasis, loudness,
Opus encoding, splits by sentence, manifest fields), with Hindi text and voices. The
sentences are Devanagari, built from templates and word lists written for this corpus
(released CC0) with the agreement Hindi needs (gender and number of nouns, adjectives
and verbs; the oblique case before postpositions; the ergative ने with transitive verbs
in the past). Every sentence is spoken by two espeak-ng Hindi voice variants.

Transcript convention: Devanagari only, NFC, no digits or Latin letters; a statement
ends with the danda (।), a question with ``?``, and there is no other punctuation.

Output (``--out``, default ``steps/corpus/hindi``)::

    manifest.jsonl          one JSON object per utterance, sorted by id
    audio/<id>.opus         16 kHz mono Ogg/Opus, one file per utterance

Usage::

    python steps/corpus/generate_corpus_hindi.py --seed 17 --jobs 2
"""
from __future__ import annotations

import sys
import unicodedata
from pathlib import Path
from typing import Any, Callable

try:  # run as a script (python steps/corpus/generate_corpus_hindi.py): the sibling is on sys.path
    import generate_corpus as base
except ImportError:  # imported as steps.corpus.generate_corpus_hindi
    from steps.corpus import generate_corpus as base

M, F = "m", "f"
VOWELS = "ािीुूृेैोौआइईउऊएऐओऔ"  # a stem ending in one of these ends in a vowel (खा, धो, आ)
DANDA = "।"

# (speaker id, espeak voice, gender, base pitch 0-99, base rate in wpm), as generate_corpus.SPEAKERS:
# hi01 .. hi08 speak with the Hindi voice and the variants m1 f2 m3 f4 m7 f1 m2 f3
SPEAKERS: list[tuple[str, str, str, int, int]] = [
    (f"hi{i:02d}", f"hi+{variant}", "male" if variant[0] == "m" else "female", pitch, rate)
    for i, (variant, pitch, rate) in enumerate(
        [("m1", 42, 165), ("f2", 58, 160), ("m3", 36, 155), ("f4", 64, 170),
         ("m7", 48, 175), ("f1", 55, 162), ("m2", 44, 168), ("f3", 62, 158)], start=1)
]


def _nouns(text: str) -> list[tuple[str, str]]:
    """'कमरा रसोई/f हवाई_अड्डा' -> [(word, gender)]: masculine unless marked /f, _ is a space."""
    out = []
    for item in text.split():
        word, _, gender = item.partition("/")
        out.append((word.replace("_", " "), gender or M))
    return out


def _places(text: str, at: str, to: str) -> list[tuple[str, str, str, str]]:
    """Locations with their postposition for 'at' (में/पर) and for 'to' ('' = bare oblique)."""
    return [(word, gender, at, to) for word, gender in _nouns(text)]


def _words(text: str) -> list[str]:
    return [w.replace("_", " ") for w in text.split()]


# --------------------------------------------------------------------------- word lists (CC0)
NAMES_M = _nouns("""राम मोहन सोहन अमित राहुल विकास सुरेश रमेश महेश दिनेश अजय विजय संजय अनिल
    सुनील राजेश मनोज अरुण करण अर्जुन रवि प्रकाश आकाश दीपक गोपाल हरीश नितिन रोहित सचिन विनोद
    अशोक कमल मुकेश नरेश पंकज आलोक इमरान सलीम यूसुफ़ गुरप्रीत""")
NAMES_F = _nouns("""सीता/f गीता/f रीता/f मीना/f सुनीता/f अनीता/f पूजा/f प्रिया/f नेहा/f अंजलि/f
    कविता/f ममता/f सरिता/f रेखा/f आशा/f उषा/f लता/f शीला/f निशा/f दिव्या/f स्नेहा/f ज्योति/f
    राधा/f पार्वती/f मीरा/f फ़ातिमा/f ज़ोया/f आयशा/f नीलम/f शालिनी/f रश्मि/f सोनिया/f रुचि/f
    श्वेता/f तनुजा/f सायरा/f हरप्रीत/f जसलीन/f""")
NAMES = NAMES_M + NAMES_F
PLACES = _words("""दिल्ली मुंबई कोलकाता चेन्नई बेंगलुरु हैदराबाद पुणे जयपुर लखनऊ पटना भोपाल इंदौर
    आगरा वाराणसी अमृतसर शिमला गोवा कानपुर नागपुर सूरत अहमदाबाद चंडीगढ़ देहरादून रांची गुवाहाटी
    कोच्चि मैसूर उदयपुर जोधपुर अजमेर ऋषिकेश हरिद्वार मथुरा प्रयागराज नासिक मेरठ ग्वालियर बीकानेर
    नैनीताल मनाली दार्जिलिंग लद्दाख केरल पंजाब बिहार असम नेपाल जापान रूस लंदन""")
THINGS = _nouns("""पंखा दरवाज़ा बक्सा गिलास कटोरा चश्मा छाता ताला तौलिया थैला डिब्बा घड़ा जूता
    कंबल तकिया आईना फ़ोन कैमरा रेडियो पेन कंप्यूटर झोला कप प्याला बर्तन गमला पौधा खिलौना
    गुब्बारा लिफ़ाफ़ा पार्सल बटुआ सूटकेस हेलमेट नक्शा कैलेंडर पर्दा सोफ़ा पलंग स्टूल हथौड़ा
    ढोल तबला कोट स्वेटर दस्ताना कुर्ता साबुन कंघा बल्ब चाकू तवा
    किताब/f कॉपी/f पेंसिल/f चाबी/f घड़ी/f कुर्सी/f मेज़/f अलमारी/f खिड़की/f बोतल/f थाली/f
    प्लेट/f कटोरी/f चादर/f रज़ाई/f छतरी/f टोपी/f कमीज़/f साड़ी/f चप्पल/f अंगूठी/f माला/f
    घंटी/f मोमबत्ती/f टॉर्च/f बैटरी/f साइकिल/f गाड़ी/f नाव/f तस्वीर/f चिट्ठी/f डायरी/f
    बाल्टी/f सीढ़ी/f रस्सी/f कैंची/f गेंद/f गुड़िया/f पतंग/f टोकरी/f दवाई/f""")
PEOPLE = _nouns("""डॉक्टर अध्यापक किसान ड्राइवर पड़ोसी छात्र पायलट दर्ज़ी वकील गायक लेखक सिपाही
    इंजीनियर मैनेजर वेटर धोबी माली हलवाई दुकानदार पुजारी मछुआरा कुम्हार बढ़ई लोहार सुनार नाई
    डाकिया चौकीदार रसोइया पत्रकार कलाकार खिलाड़ी व्यापारी अफ़सर मेहमान ग्राहक लड़का
    अध्यापिका/f पड़ोसन/f छात्रा/f नर्स/f गायिका/f लेखिका/f लड़की/f""")
# honorific: these take plural agreement (मेरी माँ आईं, मेरे चाचा गए) and never change form
RELATIVES = _nouns("""भाई पिताजी चाचा मामा दादा नाना पति दोस्त ताऊ फूफा
    बहन/f माँ/f दादी/f नानी/f चाची/f मामी/f मौसी/f बुआ/f बेटी/f पत्नी/f""")
ANIMALS = _nouns("""कुत्ता घोड़ा बंदर शेर हाथी तोता मोर खरगोश ऊँट भालू हिरन चूहा मेंढक साँप
    कछुआ गधा उल्लू बाघ मुर्गा बैल कबूतर कौआ पिल्ला भेड़िया
    बिल्ली/f गाय/f बकरी/f चिड़िया/f मछली/f भैंस/f मुर्गी/f बत्तख़/f लोमड़ी/f भेड़/f गिलहरी/f
    तितली/f""")
LOCATIONS = (  # (word, gender, 'at' postposition, 'to' postposition or '' for the bare oblique)
    _places("""बाज़ार स्कूल अस्पताल दफ़्तर पार्क मंदिर गाँव खेत होटल बैंक डाकघर थाना संग्रहालय
        पुस्तकालय चिड़ियाघर मेला ढाबा सिनेमाघर स्टेडियम कारख़ाना जंगल बगीचा गिरजाघर किला
        महल मस्जिद/f दुकान/f बेकरी/f धर्मशाला/f""", "में", "")
    + _places("स्टेशन हवाई_अड्डा बस_अड्डा समुद्र_तट बंदरगाह", "पर", "")
    + _places("कमरा आँगन तहख़ाना हॉल तालाब रसोई/f कक्षा/f गुफ़ा/f झोपड़ी/f गली/f घाटी/f",
              "में", "में")
    + _places("पुल पहाड़ टापू चौराहा छत/f सड़क/f झील/f", "पर", "पर")
)
# adjectives in the masculine direct singular; those in -ā agree, the others never change
ADJ_THING = _words("""बड़ा छोटा नया पुराना लाल नीला हरा पीला काला सफ़ेद भूरा गुलाबी सुनहरा
    चमकीला भारी हल्का लंबा मोटा पतला गंदा साफ़ गीला सूखा सस्ता महँगा सुंदर अच्छा ख़राब मुलायम
    सख़्त चिकना खुरदरा गोल चौकोर ख़ाली अनोखा अजीब प्यारा रंगीन ऊनी रेशमी सूती कीमती मज़बूत
    कमज़ोर चौड़ा नुकीला धुँधला फीका गहरा""")
ADJ_PERSON = _words("""ख़ुश उदास थका भूखा प्यासा व्यस्त आलसी होशियार बहादुर सावधान विनम्र
    ईमानदार नाराज़ शांत परेशान चिंतित उत्साहित बीमार मेहनती दयालु शर्मीला गंभीर
    अकेला नटखट समझदार चालाक घमंडी लापरवाह बेचैन""")
ADJ_ANIMAL = _words("""छोटा बड़ा काला सफ़ेद भूरा मोटा पतला बूढ़ा प्यारा सुंदर चितकबरा जंगली
    पालतू फुर्तीला""")
ADJ_PLACE = _words("""शांत सुंदर ख़ाली व्यस्त साफ़ गंदा प्रसिद्ध मशहूर ठंडा गरम अँधेरा छोटा
    बड़ा पुराना नया सुनसान ख़ूबसूरत सुहावना""")
FOODS = _nouns("""चावल समोसा पराठा हलवा लड्डू डोसा पनीर दही आम केला सेब संतरा अमरूद पपीता
    तरबूज़ नारियल पुलाव राजमा
    रोटी/f दाल/f सब्ज़ी/f खिचड़ी/f खीर/f जलेबी/f पूरी/f इडली/f मिठाई/f बिरयानी/f कचौरी/f
    चाट/f""")
DRINKS = _nouns("दूध पानी शरबत जूस चाय/f कॉफ़ी/f लस्सी/f छाछ/f")
FOOD_AND_DRINK = FOODS + DRINKS
FOOD_ADJ = _words("गरम ठंडा ताज़ा मीठा स्वादिष्ट तीखा नमकीन")
ADVERBS = _words("""धीरे जल्दी ध्यान_से चुपचाप ज़ोर_से आराम_से प्यार_से ख़ुशी_से सावधानी_से
    मज़े_से शांति_से अच्छी_तरह तेज़ी_से आसानी_से धैर्य_से""")
DEGREE = _words("बहुत काफ़ी बेहद ज़्यादा सचमुच बहुत_ही बिल्कुल")
NUMBERS = _words("""दो तीन चार पाँच छह सात आठ नौ दस ग्यारह बारह तेरह चौदह पंद्रह सोलह सत्रह
    अठारह उन्नीस बीस पच्चीस तीस चालीस पचास साठ सत्तर अस्सी नब्बे सौ""")
DATES = _words("""एक दो तीन चार पाँच छह सात आठ नौ दस ग्यारह बारह तेरह चौदह पंद्रह सोलह
    सत्रह अठारह उन्नीस बीस इक्कीस बाईस तेईस चौबीस पच्चीस छब्बीस सत्ताईस अट्ठाईस""")
HOURS = _words("एक दो तीन चार पाँच छह सात आठ नौ दस ग्यारह बारह")
DURATIONS = _words("मिनट घंटे दिन")
DAYS = _words("सोमवार मंगलवार बुधवार गुरुवार शुक्रवार शनिवार रविवार")
MONTHS = _words("जनवरी फ़रवरी मार्च अप्रैल मई जून जुलाई अगस्त सितंबर अक्टूबर नवंबर दिसंबर")
T_PAST = (_words("""कल परसों आज_सुबह कल_रात कल_शाम पिछले_हफ़्ते पिछले_महीने पिछले_साल
    दो_दिन_पहले एक_घंटा_पहले पिछली_गर्मियों_में पिछली_सर्दियों_में""")
          + [f"{d} को" for d in DAYS] + [f"{m} में" for m in MONTHS])
T_FUT = (_words("""कल परसों आज_शाम आज_रात अगले_हफ़्ते अगले_महीने अगले_साल जल्द_ही इस_हफ़्ते
    दोपहर_में शाम_को सुबह_सुबह""") + [f"{d} को" for d in DAYS])
POSS = _words("मेरा हमारा तुम्हारा उसका आपका")
NEAR = _words("के_पास के_पीछे के_सामने के_बाहर के_अंदर के_नीचे")
WEATHER = _nouns("ठंड/f गर्मी/f धूप/f उमस/f हवा/f कोहरा")
WEATHER_DEG = _words("बहुत काफ़ी ज़्यादा बहुत_ज़्यादा")
CONDITIONS = _words("""धूप_निकली बारिश_नहीं_हुई मौसम_अच्छा_रहा छुट्टी_मिली समय_मिला
    बारिश_रुकी""")
BEFORE = _words("नाश्ते सोने स्कूल_जाने शाम दोपहर मेहमानों_के_आने")
AFTER = _words("नाश्ते दोपहर_के_खाने रात_के_खाने स्कूल काम पढ़ाई")
MEAL_IN = _words("नाश्ते_में दोपहर_के_खाने_में रात_के_खाने_में")
VEHICLES = _nouns("हवाई_जहाज़ रेलगाड़ी/f बस/f गाड़ी/f नाव/f")
# verb stems (the last word carries the inflection: 'बंद कर' -> 'बंद किया')
V_GO = _words("जा आ लौट पहुँच")
V_THING = _words("""ख़रीद बेच खोल बंद_कर साफ़_कर धो उठा रख ढूँढ देख तोड़ बना भेज छिपा पकड़ गिन
    माँग चुन सजा भर ठीक_कर पैक_कर तौल नाप रंग चुरा लौटा फेंक खींच हिला पोंछ जाँच गिरा बाँध
    लपेट उतार इस्तेमाल_कर पसंद_कर बदल संभाल सुखा गरम_कर चमका""")
V_PUT = _words("रख छोड़ छिपा ले_जा रख_दे पहुँचा")
V_LOSE = _words("रख छिपा छोड़ ख़रीद बेच देख भेज फेंक खो")
V_CARRY = _words("उठा ख़रीद पैक_कर साफ़_कर ठीक_कर लपेट धो")
V_PERSON = _words("""बुला देख पहचान ढूँढ रोक पुकार समझा हँसा जगा मना छोड़ डाँट भेज याद_कर
    फ़ोन_कर माफ़_कर बचा चिढ़ा""")
V_INTRANS = _words("सो हँस नाच रो दौड़ तैर घूम बैठ रुक नहा मुस्कुरा चिल्ला कूद जाग")
V_ANIMAL = _words("सो खेल दौड़ खा नहा तैर कूद चिल्ला आराम_कर")
V_ACTIVITY = _words("""चल बोल हँस गा पढ़ लिख सो खा दौड़ काम_कर बात_कर इंतज़ार_कर आराम_कर
    खाना_बना कसरत_कर सफ़ाई_कर मेहनत_कर तैर""")
V_RUN = _words("दौड़ चल")
V_MISCHIEF = _words("तोड़ गिरा छिपा उठा")  # what an animal does to a thing
V_EAT, V_DRINK = "खा", "पी"


# --------------------------------------------------------------------------- morphology
def obl(noun: str, gender: str) -> str:
    """Oblique singular (also the masculine direct plural): कमरा -> कमरे, तकिया -> तकिए."""
    if gender == M:
        if noun.endswith("या"):
            return noun[:-2] + "ए"
        if noun.endswith("ा"):
            return noun[:-1] + "े"
        if noun.endswith("आ"):
            return noun[:-1] + "ए"
    return noun


def plural(noun: str, gender: str) -> str:
    """Direct plural: कमरे, घर; किताबें, कुर्सियाँ, गुड़ियाँ, दवाइयाँ, मालाएँ."""
    if gender == M:
        return obl(noun, gender)
    if noun.endswith("िया"):
        return noun + "ँ"
    if noun.endswith(("ी", "ि")):
        return noun[:-1] + "ियाँ"
    if noun.endswith("ई"):
        return noun[:-1] + "इयाँ"
    if noun.endswith("ा"):
        return noun + "एँ"
    return noun + "ें"


def agree(word: str, gender: str, oblique: bool = False) -> str:
    """Agree an -ā adjective or participle (बड़ा, नया, मेरा, जाता): masculine -ा/-े, feminine -ी.

    ``oblique`` gives the masculine oblique or plural form; other words never change.
    """
    if word.endswith("या"):
        stem, fem, masc_pl = word[:-2], "ई", "ए"
    elif word.endswith("ा"):
        stem, fem, masc_pl = word[:-1], "ी", "े"
    else:
        return word
    if gender == F:
        return stem + fem
    return stem + masc_pl if oblique else word


def _split(stem: str) -> tuple[str, str]:
    head, _, last = stem.rpartition(" ")
    return (head + " " if head else ""), last


_PAST = {"जा": "गया", "कर": "किया", "दे": "दिया", "ले": "लिया", "पी": "पिया"}
_FUTURE_STEM = {"पी": "पि"}
_IMPERATIVE = {"कर": "कीजिए", "दे": "दीजिए", "ले": "लीजिए", "पी": "पीजिए"}


def past(stem: str, gender: str, plural_: bool = False) -> str:
    """Perfective: देखा/देखी/देखे/देखीं, गया/गई/गए/गईं, किया/की/किए/कीं."""
    head, verb = _split(stem)
    form = _PAST.get(verb) or verb + ("या" if verb[-1] in VOWELS else "ा")
    if form.endswith("िया"):
        stem_, fem, masc_pl = form[:-3], "ी", "िए"
    elif form.endswith("या"):
        stem_, fem, masc_pl = form[:-2], "ई", "ए"
    else:
        stem_, fem, masc_pl = form[:-1], "ी", "े"
    if gender == F:
        form = stem_ + fem + ("ं" if plural_ else "")
    elif plural_:
        form = stem_ + masc_pl
    return head + form


def fut(stem: str, gender: str, plural_: bool = False) -> str:
    """Future, third person: देखेगा/देखेगी/देखेंगे, जाएगा/जाएँगे, देगा/देंगे, पिएगा."""
    head, verb = _split(stem)
    verb = _FUTURE_STEM.get(verb, verb)
    if verb.endswith("े"):
        end = "ंगे" if plural_ else "गा"
    elif verb[-1] in VOWELS:
        end = "एँगे" if plural_ else "एगा"
    else:
        end = "ेंगे" if plural_ else "ेगा"
    form = verb + end
    return head + (form[:-1] + "ी" if gender == F else form)


def imperative(stem: str) -> str:
    """Polite imperative: रखिए, खाइए, कीजिए, ले जाइए."""
    head, verb = _split(stem)
    return head + _IMPERATIVE.get(verb, verb + ("इए" if verb[-1] in VOWELS else "िए"))


def habitual(stem: str, gender: str, plural_: bool = False) -> str:
    """Imperfective participle: जाता/जाती/जाते (the auxiliary follows)."""
    return agree(stem + "ता", gender, plural_)


def progressive(stem: str, gender: str, plural_: bool = False) -> str:
    """Continuous participle: सो रहा/सो रही/सो रहे (the auxiliary follows)."""
    return f"{stem} {agree('रहा', gender, plural_)}"


def infinitive(stem: str, gender: str = M, oblique: bool = False) -> str:
    """Infinitive: करना, (object-agreeing) करनी, oblique करने."""
    return agree(stem + "ना", gender, oblique)


def conjunctive(stem: str) -> str:
    """Absolutive: उठाकर, धोकर, साफ़ करके."""
    head, verb = _split(stem)
    return head + ("करके" if verb == "कर" else verb + "कर")


def was(gender: str, plural_: bool = False) -> str:
    """था/थी/थे/थीं."""
    return agree("था", gender, plural_) + ("ं" if plural_ and gender == F else "")


def at(loc: tuple[str, str, str, str]) -> str:
    """Where: 'कमरे में', 'स्टेशन पर'."""
    word, gender, post, _ = loc
    return f"{obl(word, gender)} {post}"


def to(loc: tuple[str, str, str, str]) -> str:
    """Where to: 'बाज़ार', 'स्टेशन', 'कमरे में', 'छत पर'."""
    word, gender, _, post = loc
    return f"{obl(word, gender)} {post}".strip()


def _two(c: Callable[[list[Any]], Any], items: list[Any]) -> tuple[Any, Any]:
    """Two different items from one list."""
    first, second = c(items), c(items)
    while second == first:
        second = c(items)
    return first, second


# --------------------------------------------------------------------------- templates
def _t01(c):
    name, g = c(NAMES)
    return f"{name} {c(T_FUT)} {c(PLACES)} {fut(c(V_GO), g)}{DANDA}"


def _t02(c):
    rel, g = c(RELATIVES)
    return f"{agree(c(POSS), g, True)} {rel} {c(T_PAST)} {c(PLACES)} {past(c(V_GO), g, True)}{DANDA}"


def _t03(c):
    (name, _), (thing, tg) = c(NAMES), c(THINGS)
    return f"{name} ने {c(T_PAST)} {agree(c(ADJ_THING), tg)} {thing} {past(c(V_THING), tg)}{DANDA}"


def _t04(c):
    (person, pg), (thing, tg) = c(PEOPLE), c(THINGS)
    return (f"{agree(c(ADJ_PERSON), pg, True)} {obl(person, pg)} ने एक {agree(c(ADJ_THING), tg)} "
            f"{thing} {past(c(V_THING), tg)}{DANDA}")


def _t05(c):
    thing, tg = c(THINGS)
    return f"कृपया {agree('अपना', tg)} {thing} {at(c(LOCATIONS))} {imperative(c(V_PUT))}{DANDA}"


def _t06(c):
    thing, tg = c(THINGS)
    return f"क्या आप {c(T_FUT)} {agree(c(ADJ_THING), tg)} {thing} {fut(c(V_THING), M, True)}?"


def _t07(c):
    return f"हम {c(T_FUT)} {c(PLACES)} {fut(c(V_GO), M, True)}{DANDA}"


def _t08(c):
    thing, tg = c(THINGS)
    return (f"{at(c(LOCATIONS))} {c(NUMBERS)} {agree(c(ADJ_THING), tg, True)} "
            f"{plural(thing, tg)} हैं{DANDA}")


def _t09(c):
    person, pg = c(PEOPLE)
    return f"क्या तुमने {at(c(LOCATIONS))} {obl(person, pg)} को {past(c(V_PERSON), M)}?"


def _t10(c):
    thing, tg = c(THINGS)
    return f"मुझे लगता है कि यह {thing} {c(DEGREE)} {agree(c(ADJ_THING), tg)} है{DANDA}"


def _t11(c):
    thing, _ = c(THINGS)
    return f"{c(T_FUT)} {thing} {infinitive(c(V_THING))} मत भूलना{DANDA}"


def _t12(c):
    thing, tg = c(THINGS)
    return f"तुमने {agree(c(ADJ_THING), tg)} {thing} कहाँ {past(c(V_LOSE), tg)}?"


def _t13(c):
    animal, ag = c(ANIMALS)
    return (f"{agree(c(ADJ_ANIMAL), ag)} {animal} {at(c(LOCATIONS))} "
            f"{progressive(c(V_ANIMAL), ag)} है{DANDA}")


def _t14(c):
    (name, _), (other, _) = c(NAMES_M), c(NAMES)
    return f"{name} और {other} {c(T_PAST)} {at(c(LOCATIONS))} {past(c(V_INTRANS), M, True)}{DANDA}"


def _t15(c):
    food, fg = c(FOODS)
    return f"क्या आप {agree(c(FOOD_ADJ), fg)} {food} {fut(V_EAT, M, True)}?"


def _t16(c):
    drink, dg = c(DRINKS)
    return f"क्या आप {agree(c(FOOD_ADJ), dg)} {drink} {fut(V_DRINK, M, True)}?"


def _t17(c):
    word, g, _, _ = c(LOCATIONS)
    thing, tg = c(THINGS)
    return (f"{obl(word, g)} {c(NEAR)} एक {agree(c(ADJ_THING), tg)} {thing} "
            f"{was(tg)}{DANDA}")


def _t18(c):
    name, g = c(NAMES)
    return f"{name} हमेशा {c(ADVERBS)} {habitual(c(V_ACTIVITY), g)} है{DANDA}"


def _t19(c):
    word, g, _, _ = c(LOCATIONS)
    return f"{obl(word, g)} तक पहुँचने में {c(NUMBERS)} {c(DURATIONS)} लगते हैं{DANDA}"


def _t20(c):
    person, pg = c(PEOPLE)
    return f"आज {person} {agree('इतना', pg)} {agree(c(ADJ_PERSON), pg)} क्यों है?"


def _t21(c):
    (name, _), (person, pg) = c(NAMES), c(PEOPLE)
    return (f"{name} ने {c(T_PAST)} {obl(person, pg)} को {c(ADVERBS)} "
            f"{past(c(V_PERSON), M)}{DANDA}")


def _t22(c):
    (person, pg), (thing, tg) = c(PEOPLE), c(THINGS)
    return (f"{agree('हमारा', pg)} {agree(c(ADJ_PERSON), pg)} {person} हर {c(DAYS)} "
            f"{plural(thing, tg)} {habitual(c(V_THING), pg)} है{DANDA}")


def _t23(c):
    animal, ag = c(ANIMALS)
    return (f"मैंने {agree('इतना', ag)} {agree(c(ADJ_ANIMAL), ag)} {animal} कभी नहीं "
            f"{past('देख', ag)}{DANDA}")


def _t24(c):
    (name, _), (thing, tg) = c(NAMES), c(THINGS)
    return (f"{name} ने {c(T_PAST)} {agree('कितना', tg, True)} {plural(thing, tg)} "
            f"{past(c(V_THING), tg, True)}?")


def _t25(c):
    word, g, _, _ = c(LOCATIONS)
    return f"उसने कहा कि {word} {c(DEGREE)} {agree(c(ADJ_PLACE), g)} है{DANDA}"


def _t26(c):
    (name, g), (thing, _) = c(NAMES), c(THINGS)
    return (f"{name} {c(T_FUT)} {thing} {infinitive(c(V_THING), oblique=True)} "
            f"{agree('वाला', g)} है{DANDA}")


def _t27(c):
    weather, _ = c(WEATHER)
    return f"क्या आज {c(PLACES)} में {c(WEATHER_DEG)} {weather} है?"


def _t28(c):
    person, pg = c(PEOPLE)
    return (f"{c(PLACES)} {agree('का', pg)} {person} {c(ADVERBS)} "
            f"{progressive(c(V_ACTIVITY), pg)} {was(pg)}{DANDA}")


def _t29(c):
    thing, tg = c(THINGS)
    return (f"उन्होंने {at(c(LOCATIONS))} {c(NUMBERS)} {plural(thing, tg)} "
            f"{past(c(V_THING), tg, True)}{DANDA}")


def _t30(c):
    thing, tg = c(THINGS)
    return f"तुम्हें {c(BEFORE)} से पहले {thing} {infinitive(c(V_THING), tg)} चाहिए{DANDA}"


def _t31(c):
    return f"चलो {c(T_FUT)} {to(c(LOCATIONS))} चलते हैं{DANDA}"


def _t32(c):
    thing, tg = c(THINGS)
    return (f"मुझे {agree('अपना', tg)} {agree(c(ADJ_THING), tg)} {thing} कहीं नहीं मिल "
            f"{agree('रहा', tg)}{DANDA}")


def _t33(c):
    person, pg = c(PEOPLE)
    return f"आज {agree('हमारा', pg)} {person} {agree(c(ADJ_PERSON), pg)} नहीं है{DANDA}"


def _t34(c):
    name, _ = c(NAMES)
    return f"हम {c(T_FUT)} {at(c(LOCATIONS))} {name} से मिलेंगे{DANDA}"


def _t35(c):
    animal, ag = c(ANIMALS)
    return (f"{c(T_PAST)} {agree(c(POSS), ag)} {animal} {c(DEGREE)} "
            f"{agree(c(ADJ_PERSON), ag)} {was(ag)}{DANDA}")


def _t36(c):
    person, pg = c(PEOPLE)
    return f"{obl(person, pg)} ने कहा कि इसकी कीमत {c(NUMBERS)} रुपये है{DANDA}"


def _t37(c):
    (name, g), (other, _) = _two(c, NAMES)
    return f"{name} {other} के साथ {c(PLACES)} जाना {habitual('चाह', g)} है{DANDA}"


def _t38(c):
    (person, pg), (rel, rg) = c(PEOPLE), c(RELATIVES)
    return f"{person} {agree('आपका', rg, True)} {rel} से कब {fut('मिल', pg)}?"


def _t39(c):
    name, g = c(NAMES)
    return f"{c(AFTER)} के बाद {name} {at(c(LOCATIONS))} {past(c(V_INTRANS), g)}{DANDA}"


def _t40(c):
    (thing, tg), (animal, ag) = c(THINGS), c(ANIMALS)
    return (f"यह {thing} {obl(animal, ag)} के लिए {c(DEGREE)} {agree(c(ADJ_THING), tg)} "
            f"है{DANDA}")


def _t41(c):
    rel, g = c(RELATIVES)
    return (f"{agree(c(POSS), g, True)} {rel} {c(PLACES)} से {c(NUMBERS)} किलोमीटर दूर "
            f"{habitual('रह', g, True)} हैं{DANDA}")


def _t42(c):
    (name, g), (thing, tg) = c(NAMES), c(THINGS)
    return (f"{name} {agree(c(ADJ_THING), tg)} {thing} {conjunctive(c(V_CARRY))} "
            f"{to(c(LOCATIONS))} ले {past('जा', g)}{DANDA}")


def _t43(c):
    return f"अगर {c(T_FUT)} {c(CONDITIONS)} तो हम {to(c(LOCATIONS))} जाएँगे{DANDA}"


def _t44(c):
    (person, pg), (word, g, _, _) = c(PEOPLE), c(LOCATIONS)
    return (f"{agree(c(ADJ_PERSON), pg, True)} {obl(person, pg)} ने बताया कि {word} "
            f"{agree(c(ADJ_PLACE), g)} है{DANDA}")


def _t45(c):
    (rel, rg), (person, pg) = c(RELATIVES), c(PEOPLE)
    return (f"मैं और {agree('मेरा', rg, True)} {rel} {c(PLACES)} में {obl(person, pg)} से "
            f"मिलने गए{DANDA}")


def _t46(c):
    (name, _), (food, fg) = c(NAMES), c(FOOD_AND_DRINK)
    return f"{name} को {agree(c(FOOD_ADJ), fg)} {food} बहुत पसंद है{DANDA}"


def _t47(c):
    (name, _), (food, fg) = c(NAMES), c(FOODS)
    return f"{name} ने {c(MEAL_IN)} {food} {past(V_EAT, fg)}{DANDA}"


def _t48(c):
    (name, _), (drink, dg) = c(NAMES), c(DRINKS)
    return f"{name} ने {c(MEAL_IN)} {agree(c(FOOD_ADJ), dg)} {drink} {past(V_DRINK, dg)}{DANDA}"


def _t49(c):
    (name, g), (person, pg) = c(NAMES), c(PEOPLE)
    return f"{name} {c(T_FUT)} {obl(person, pg)} को {fut(c(V_PERSON), g)}{DANDA}"


def _t50(c):
    name, _ = c(NAMES)
    return f"{name} का जन्मदिन {c(DATES)} {c(MONTHS)} को है{DANDA}"


def _t51(c):
    vehicle, vg = c(VEHICLES)
    return (f"{agree(c(POSS), vg)} {vehicle} {c(HOURS)} बजे {c(PLACES)} "
            f"{fut('पहुँच', vg)}{DANDA}")


def _t52(c):
    name, g = c(NAMES)
    return f"{name} रोज़ सुबह {c(NUMBERS)} किलोमीटर {habitual(c(V_RUN), g)} है{DANDA}"


def _t53(c):
    name, g = c(NAMES)
    return f"{name} {c(T_PAST)} कहाँ {past(c(V_GO), g)} {was(g)}?"


def _t54(c):
    (animal, ag), (thing, tg) = c(ANIMALS), c(THINGS)
    return (f"{agree(c(ADJ_ANIMAL), ag, True)} {obl(animal, ag)} ने {agree(c(POSS), tg)} "
            f"{thing} {past(c(V_MISCHIEF), tg)}{DANDA}")


def _t55(c):
    weather, wg = c(WEATHER)
    return f"{c(T_PAST)} {c(PLACES)} में {c(WEATHER_DEG)} {weather} {was(wg)}{DANDA}"


TEMPLATES = [_t01, _t02, _t03, _t04, _t05, _t06, _t07, _t08, _t09, _t10, _t11, _t12, _t13, _t14,
             _t15, _t16, _t17, _t18, _t19, _t20, _t21, _t22, _t23, _t24, _t25, _t26, _t27, _t28,
             _t29, _t30, _t31, _t32, _t33, _t34, _t35, _t36, _t37, _t38, _t39, _t40, _t41, _t42,
             _t43, _t44, _t45, _t46, _t47, _t48, _t49, _t50, _t51, _t52, _t53, _t54, _t55]


def make_sentence(deck: base.Deck) -> str:
    """One sentence from a randomly dealt template, in NFC (stable under NFKC)."""
    return unicodedata.normalize("NFC", deck(TEMPLATES)(deck))


HINDI = base.Language(
    name="Hindi", make_sentence=make_sentence, speakers=SPEAKERS,
    default_out=Path(__file__).resolve().parent / "hindi", num_sentences=480, seed=17,
    max_bytes=5_000_000, description=__doc__.split("\n\n")[0], pair_prefix="h",
    punctuation=DANDA + "?", speakers_per_sentence=(2,),
)


if __name__ == "__main__":
    sys.exit(base.main(None, HINDI))
